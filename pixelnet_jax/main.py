"""Command-line launchers: ``pixelnet-train``, ``pixelnet-eval`` and ``pixelnet-predict``.

    pixelnet-train --config experiments/configs/procedural_segmentation.py --workdir runs/seg \
        [--config.num_train_steps=100 ...]
    pixelnet-eval --config experiments/configs/procedural_segmentation.py --workdir runs/seg \
        [--step N | --best]
    pixelnet-predict --config experiments/configs/bsds_edges.py --workdir runs/bsds \
        --out_dir PNGS [--split val] [--step N | --best] [--scales 0.5,1,1.5]

The config is locked, so a misspelt ``--config.key`` fails before anything runs;
``config_base.validate_config`` checks the values before anything compiles.

Every launcher: ``--help`` lists its flags; ``--flag-name`` is accepted for ``--flag_name``
(e.g. ``--out-dir``); library INFO logs (orbax, absl) are off unless ``--verbosity``
(``-v``) is given, e.g. ``-v 0`` or ``-v 1``. Ctrl-C or SIGTERM during training saves the
step reached and exits with status 0; a second one exits at once.
"""

from __future__ import annotations

import json
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from pixelnet_jax import evaluate, predict, train

FLAGS = flags.FLAGS


def _define_common():
  config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (experiments/configs/*.py[:arg]).", lock_config=True
  )
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and pictures.")
  flags.mark_flags_as_required(["config", "workdir"])


def _define_checkpoint_choice():
  flags.DEFINE_integer("step", None, "Checkpoint step to use (default: the latest).")
  flags.DEFINE_bool("best", False, "Use the best checkpoint instead of the latest.")


def _setup(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # Progress comes from the project's own logger (utils.get_logger); absl's INFO
  # stream is mostly checkpointing chatter: off unless --verbosity / -v asks for it.
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if jax.process_count() > 1:
    logging.info("Process %d of %d.", jax.process_index(), jax.process_count())


def _fail(error: Exception):
  print(f"error: {error}", file=sys.stderr)
  sys.exit(2)


def _train_main(argv):
  _setup(argv)
  try:
    summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ValueError, FileNotFoundError, FloatingPointError) as e:
    # ConfigError and DataError are ValueErrors; so are the data sources' own checks.
    _fail(e)
  result = {k: v for k, v in summary.items() if k != "state"}
  print(json.dumps(result, default=float))
  print(
    f"Workdir {FLAGS.workdir}: metrics.jsonl, tensorboard/, pictures/*.png, "
    "checkpoints/, best/, config.json",
    file=sys.stderr,
  )


def _eval_main(argv):
  _setup(argv)
  try:
    result = evaluate.evaluate_checkpoint(
      FLAGS.config, FLAGS.workdir, step=FLAGS.step, best=FLAGS.best
    )
  except (ValueError, FileNotFoundError) as e:
    _fail(e)
  print(json.dumps(result, default=float))


def _predict_main(argv):
  _setup(argv)
  try:
    result = predict.write_edge_maps(
      FLAGS.config,
      FLAGS.workdir,
      FLAGS.out_dir,
      split=FLAGS.split,
      step=FLAGS.step,
      best=FLAGS.best,
      scales=tuple(float(v) for v in FLAGS.scales),
    )
  except (ValueError, FileNotFoundError) as e:
    _fail(e)
  print(
    f"wrote {len(result['ids'])} PNGs of split {result['split']!r} "
    f"(step {result['step']}) to {result['out_dir']}"
  )


def _hyphen_aliases(argv: list[str]) -> list[str]:
  """``--out-dir[=v]`` -> ``--out_dir[=v]`` (also ``--no-``) for every defined flag.

  absl flag names cannot contain hyphens, so every launcher accepts the hyphenated
  spelling of its flags by rewriting argv before absl parses it (up to a bare ``--``).
  """
  result = list(argv[:1])
  for i, arg in enumerate(argv[1:], start=1):
    if arg == "--":
      return result + list(argv[i:])
    name, eq, value = arg[2:].partition("=")
    if arg.startswith("--") and "-" in name:
      fixed = name.replace("-", "_")
      if fixed in FLAGS:
        arg = f"--{fixed}{eq}{value}"
      elif fixed.startswith("no_") and fixed[3:] in FLAGS:  # --no-flag-name
        arg = f"--no{fixed[3:]}{eq}{value}"
    result.append(arg)
  return result


def _run(main, usage: str, flag_names: list[str]):
  """Runs ``main`` with absl, the same way for every launcher.

  ``--help`` lists the key flags of the main module, which for an installed console
  script is the generated wrapper, not this module: declare ours (and ``verbosity``) as
  its key flags, and give it a usage line.
  """
  main_module = sys.modules.get("__main__")
  if main_module is not None and not main_module.__doc__:
    main_module.__doc__ = usage
  for name in [*flag_names, "verbosity"]:
    FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])

  def guarded(argv):
    try:
      main(argv)
    except KeyboardInterrupt:
      # Ctrl-C outside the training loop's own handler (setup, final waits): no traceback.
      print("\ninterrupted.", file=sys.stderr, flush=True)
      sys.stdout.flush()
      os._exit(130)

  argv = _hyphen_aliases(sys.argv)
  try:
    app.run(guarded, argv=argv)
  except SystemExit as e:
    # absl exits with status 1 after printing --help; asking for help is not a failure.
    asked = {"-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml"} & set(argv[1:])
    if asked and e.code == 1:
      sys.exit(0)
    raise


_COMMON = ["config", "workdir"]
_CHOICE = ["step", "best"]


def run_train():
  _define_common()
  _run(
    _train_main,
    "Trains PixelNet (resuming the work directory if it has checkpoints).\n\n"
    "pixelnet-train --config CONFIG.py --workdir DIR [--config.key=value ...]",
    _COMMON,
  )


def run_eval():
  _define_common()
  _define_checkpoint_choice()
  _run(
    _eval_main,
    "Evaluates a checkpoint of a work directory on the eval split.\n\n"
    "pixelnet-eval --config CONFIG.py --workdir DIR [--step N | --best]",
    _COMMON + _CHOICE,
  )


def run_predict():
  _define_common()
  _define_checkpoint_choice()
  flags.DEFINE_string(
    "out_dir", None, "Where <image id>.png edge maps are written (also --out-dir)."
  )
  flags.DEFINE_string("split", None, "Split to predict (default: config.dataset.eval_split).")
  flags.DEFINE_list(
    "scales",
    ["1.0"],
    "Test-time scales whose maps are averaged, "
    "e.g. 0.5,1,1.5 (multi-scale testing); default 1.0 only.",
  )
  flags.mark_flags_as_required(["out_dir"])
  _run(
    _predict_main,
    "Writes edge-probability PNGs of a split with a checkpoint of a work directory.\n\n"
    "pixelnet-predict --config CONFIG.py --workdir DIR --out_dir PNGS [--split val] "
    "[--step N | --best] [--scales 0.5,1,1.5]",
    _COMMON + _CHOICE + ["out_dir", "split", "scales"],
  )


if __name__ == "__main__":
  run_train()
