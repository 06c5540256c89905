"""Times the train step of a config (default: the paper's VGG-16, 224^2, 5 x 2,000 pixels).

Prints one JSON object: compile time, median and min step time, pixels/s, the
parameter count and the device. Batches come from the procedural dataset so
nothing needs downloading; the step is the real one (sampling inside the step,
hypercolumn reads, MLP head, loss, gradient, optimizer update).

    python benchmarks/train_step.py                       # paper size
    python benchmarks/train_step.py --config experiments/configs/procedural_segmentation.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import numpy as np

from pixelnet_jax import config_base, models, parallel
from pixelnet_jax.data import pipeline, registry
from pixelnet_jax.state import create_train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default=os.path.join(REPO, "experiments/configs/default.py"))
  parser.add_argument("--steps", type=int, default=3, help="timed steps after the first")
  parser.add_argument("--parallel", default=None, help="override config.parallel")
  args = parser.parse_args()

  config = config_base.load_config_file(args.config)
  if args.parallel:
    config.parallel = args.parallel
  devices = parallel.select_devices(config)
  task, crop = config_base.validate_config(config, len(devices))
  model = models.create_model(config.model, task.num_outputs)
  state = create_train_state(config, model, jax.random.key(0), crop)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  step_model = models.create_model(config.model, task.num_outputs, bn_axis_name=parallel.AXIS)
  step_fn = parallel.ParallelStep(config, step_model, task, devices)
  state = step_fn.put_state(state)
  source = registry.get_source(
    "procedural", "train", {"image_size": max(crop), "num_examples": 1000, "seed": 0}
  )
  batches = pipeline.make_train_iterator(
    source,
    int(config.batch_size),
    crop,
    0,
    label_keys=task.label_keys,
    label_specs=task.label_specs(),
  )
  batch = next(batches)

  start = time.perf_counter()
  state, metrics = step_fn(state, batch)
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  times = []
  for _ in range(args.steps):
    batch = next(batches)
    start = time.perf_counter()
    state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  pixels = int(config.batch_size) * int(config.points_per_image)
  print(
    json.dumps(
      {
        "benchmark": "train_step",
        "config": os.path.relpath(args.config, REPO),
        "trunk": config.model.trunk,
        "head": config.model.head,
        "batch_size": int(config.batch_size),
        "points_per_image": int(config.points_per_image),
        "crop": list(crop),
        "parallel": config.parallel,
        "devices": len(devices),
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "num_params": num_params,
        "first_step_s_incl_compile": round(first, 3),
        "step_s_median": round(median, 3),
        "step_s_min": round(min(times), 3),
        "pixels_per_s": round(pixels / median, 1),
        "loss": float(metrics["loss"]),
      }
    )
  )
  close = getattr(batches, "close", None)
  if close:
    close()


if __name__ == "__main__":
  main()
