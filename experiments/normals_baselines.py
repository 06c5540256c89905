"""Reference points for a normals run: the untrained model and constant predictions.

A short normals run's angular errors mean little alone; this prints, on the config's eval
split, the errors of

- the model at step 0 (the config's initialisation, seed ``config.seed``): where the
  run starts;
- one constant direction for every pixel: the mean of the train split's valid normals
  (a prior learnt from the labels alone), and (0, 0, 1), facing the camera.

  python experiments/normals_baselines.py --config experiments/configs/nyu_normals.py:cpu

prints one JSON line per reference (the task's metrics: mean, median, rmse, within_*).
"""

import argparse
import json
import tempfile

import jax
import numpy as np

from pixelnet_jax import config_base, evaluate, models
from pixelnet_jax.data import registry
from pixelnet_jax.metrics import normals as normal_metrics
from pixelnet_jax.state import create_train_state


def constant_scores(source, direction) -> dict:
  direction = np.asarray(direction, np.float32)
  errors = []
  for i in range(len(source)):
    example = source[i]
    constant = np.broadcast_to(direction, example["normals"].shape)
    errors.append(
      normal_metrics.angular_errors(constant, example["normals"], example["normals_valid"])
    )
  return normal_metrics.scores(errors)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", required=True, help="experiments/configs/<name>.py[:variant]")
  args = parser.parse_args()
  c = config_base.load_config_file(args.config)
  c.eval.num_pictures = 0
  task, crop = config_base.validate_config(c, 1)
  if task.name != "normals":
    raise SystemExit(f"{args.config} is a {task.name!r} config; this script is for normals.")
  split = c.dataset.eval_split
  source = registry.get_source(c.dataset.name, split, c.dataset)
  train = registry.get_source(c.dataset.name, c.dataset.train_split, c.dataset)

  model = models.create_model(c.model, task.num_outputs)
  state = create_train_state(c, model, jax.random.key(int(c.seed)), crop)
  with tempfile.TemporaryDirectory() as workdir:
    init = evaluate.Evaluator(c, model, task, source, workdir).run(state, 0)
  print(json.dumps({"reference": "step 0 (untrained)", "split": split, **init}))

  total = sum(ex["normals"][ex["normals_valid"]].astype(np.float64).sum(0) for ex in train)
  mean = total / np.linalg.norm(total)
  for name, direction in (
    (f"constant: {c.dataset.train_split} mean", mean),
    ("constant: (0, 0, 1)", (0, 0, 1)),
  ):
    scores = constant_scores(source, direction)
    print(
      json.dumps(
        {"reference": name, "direction": np.round(direction, 3).tolist(), "split": split, **scores},
        default=float,
      )
    )


if __name__ == "__main__":
  main()
