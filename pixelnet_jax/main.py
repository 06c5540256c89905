"""Command-line launchers: ``pixelnet-train``, ``pixelnet-eval`` and ``pixelnet-predict``.

    pixelnet-train --config experiments/configs/procedural_segmentation.py --workdir runs/seg \
        [--config.num_train_steps=100 ...]
    pixelnet-eval --config experiments/configs/procedural_segmentation.py --workdir runs/seg \
        [--step N | --best]
    pixelnet-predict --config experiments/configs/bsds_edges.py --workdir runs/bsds \
        --out_dir PNGS [--split val] [--step N | --best] [--scales 0.5,1,1.5] [--save_npy]

The config is locked, so a misspelt ``--config.key`` fails before anything runs;
``config_base.validate_config`` checks the values before anything compiles.

Several processes (``pixelnet-train`` and ``pixelnet-eval``; docs/multihost.md): start the
same command once per process with ``--coordinator_address=HOST:PORT --num_processes=N
--process_id=I`` (nothing on a TPU pod slice, SLURM or Open MPI: JAX detects them);
``config.batch_size`` is then global and process 0 alone writes files.

Every launcher: ``--help`` lists its flags; ``--flag-name`` is accepted for ``--flag_name``
(e.g. ``--out-dir``); library INFO logs (orbax, absl) are off unless ``--verbosity``
(``-v``) is given, e.g. ``-v 0`` or ``-v 1``. Ctrl-C or SIGTERM during training saves the
step reached and exits with status 0; a second one exits at once.
"""

from __future__ import annotations

import json
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from pixelnet_jax import cli, distributed, evaluate, predict, train
from pixelnet_jax.errors import ConfigError

FLAGS = flags.FLAGS


def _define_common():
  config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (experiments/configs/*.py[:arg]).", lock_config=True
  )
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and pictures.")
  flags.mark_flags_as_required(["config", "workdir"])


def _define_distributed():
  flags.DEFINE_string(
    "coordinator_address",
    None,
    "HOST:PORT of process 0, where the processes of a multi-process run meet (the same on "
    "every process). Not needed where JAX detects the cluster (TPU pod slice, SLURM, Open MPI).",
  )
  flags.DEFINE_integer("num_processes", None, "How many processes the run has (1: a single one).")
  flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes - 1.")


_DISTRIBUTED = ["coordinator_address", "num_processes", "process_id"]


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
  if "num_processes" in FLAGS:  # Before anything touches a device.
    try:
      distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    except ConfigError as e:
      _fail(e)


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
  if jax.process_index() == 0:
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
    result = predict.write_predictions(
      FLAGS.config,
      FLAGS.workdir,
      FLAGS.out_dir,
      split=FLAGS.split,
      step=FLAGS.step,
      best=FLAGS.best,
      scales=predict.check_scales(FLAGS.scales),
      save_npy=FLAGS.save_npy,
      limit=FLAGS.limit,
    )
  except (ValueError, FileNotFoundError) as e:
    _fail(e)
  print(
    f"wrote {len(result['files'])} files ({result['task']}) for {len(result['ids'])} images "
    f"of split {result['split']!r} (step {result['step']}) to {result['out_dir']}"
  )


_COMMON = ["config", "workdir"]
_CHOICE = ["step", "best"]


def run_train():
  _define_common()
  _define_distributed()
  cli.run(
    _train_main,
    "Trains PixelNet (resuming the work directory if it has checkpoints).\n\n"
    "pixelnet-train --config CONFIG.py --workdir DIR [--config.key=value ...]\n"
    f"  [{distributed.FLAGS_HELP}]",
    _COMMON + _DISTRIBUTED,
  )


def run_eval():
  _define_common()
  _define_checkpoint_choice()
  _define_distributed()
  cli.run(
    _eval_main,
    "Evaluates a checkpoint of a work directory on the eval split.\n\n"
    "pixelnet-eval --config CONFIG.py --workdir DIR [--step N | --best]\n"
    f"  [{distributed.FLAGS_HELP}]",
    _COMMON + _CHOICE + _DISTRIBUTED,
  )


def run_predict():
  _define_common()
  _define_checkpoint_choice()
  _define_distributed()
  flags.DEFINE_string(
    "out_dir",
    None,
    "Output folder (also --out-dir): <image id>.png per image; edges: 8-bit probability; "
    "segmentation: class ids (VOC palette for voc2012/pascal_context); normals: RGB of "
    "(n + 1) / 2 * 255.",
  )
  flags.DEFINE_string("split", None, "Split to predict (default: config.dataset.eval_split).")
  flags.DEFINE_list(
    "scales",
    ["1.0"],
    "Test-time scales whose maps are averaged, "
    "e.g. 0.5,1,1.5 (multi-scale testing; segmentation averages class probabilities, "
    "normals unit vectors); default 1.0 only.",
  )
  flags.DEFINE_bool(
    "save_npy", False, "Normals only: also write <image id>.npy, float32 [H, W, 3] unit normals."
  )
  flags.DEFINE_integer(
    "limit", None, "Predict only the split's first N images (default: all), e.g. quick checks."
  )
  flags.mark_flags_as_required(["out_dir"])
  cli.run(
    _predict_main,
    "Writes a split's predictions (one PNG per image, the task's format) with a "
    "checkpoint of a work directory.\n\n"
    "pixelnet-predict --config CONFIG.py --workdir DIR --out_dir OUT [--split val] "
    "[--step N | --best] [--scales 0.5,1,1.5] [--save_npy] [--limit N]\n"
    f"  [{distributed.FLAGS_HELP}] (each process writes its share of the images)",
    _COMMON + _CHOICE + ["out_dir", "split", "scales", "save_npy", "limit"] + _DISTRIBUTED,
  )


if __name__ == "__main__":
  run_train()
