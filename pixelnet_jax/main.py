"""Command-line launchers: ``pixelnet-train`` and ``pixelnet-eval``.

    pixelnet-train --config experiments/configs/procedural_segmentation.py --workdir /tmp/run \
        [--config.num_train_steps=100 ...]
    pixelnet-eval --config experiments/configs/procedural_segmentation.py --workdir /tmp/run \
        [--step N | --best]

The config is locked, so a misspelt ``--config.key`` fails before anything runs;
``train.validate_config`` checks the values before anything compiles.
"""

from __future__ import annotations

import json
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS


def _define_common():
  config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (experiments/configs/*.py[:arg]).", lock_config=True
  )
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and pictures.")
  flags.mark_flags_as_required(["config", "workdir"])


def _setup():
  # Progress comes from the project's own logger (utils.get_logger); absl's INFO
  # stream is mostly checkpointing chatter.
  logging.set_verbosity(logging.WARNING)
  if jax.process_count() > 1:
    logging.info("Process %d of %d.", jax.process_index(), jax.process_count())


def _fail(error: Exception):
  print(f"error: {error}", file=sys.stderr)
  sys.exit(2)


def _train_main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _setup()
  from pixelnet_jax import train  # pylint: disable=g-import-not-at-top

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
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  _setup()
  from pixelnet_jax import evaluate  # pylint: disable=g-import-not-at-top

  try:
    result = evaluate.evaluate_checkpoint(
      FLAGS.config, FLAGS.workdir, step=FLAGS.step, best=FLAGS.best
    )
  except (ValueError, FileNotFoundError) as e:
    _fail(e)
  print(json.dumps(result, default=float))


def run_train():
  _define_common()
  app.run(_train_main)


def run_eval():
  _define_common()
  flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the latest).")
  flags.DEFINE_bool("best", False, "Evaluate the best checkpoint instead of the latest.")
  app.run(_eval_main)


if __name__ == "__main__":
  run_train()
