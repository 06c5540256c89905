"""Times the train step and dense prediction with the linear-first head on and off.

``config.model.linear_first`` moves the head's first-layer projection of the taps of
stride >= ``linear_first_min_stride`` before the bilinear read (same parameters, same
outputs up to rounding). This builds one state and times, side by side in one process
and interleaved round by round (so machine load hits every variant alike):

- ``train_step``: the real per-shard step (``parallel.ParallelStep``) for each variant;
- ``predict_dense``: ``PixelNet.predict_dense`` on one eval-sized batch.

Variants: ``off`` (plain path) and ``min_stride=<s>`` for each ``--min-strides`` value.
Prints one JSON object: per variant the median/min seconds and the ratio
``off / variant`` (> 1: linear-first is faster), plus the largest output difference
between each variant and ``off`` (should be float32 rounding).

    python benchmarks/linear_first.py                              # the procedural CPU config
    python benchmarks/linear_first.py --config experiments/configs/default.py   # paper size
    python benchmarks/linear_first.py --quick                      # smoke run
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_common import procedural_batch

from pixelnet_jax import config_base, models, parallel
from pixelnet_jax.evaluate import dense_predictor
from pixelnet_jax.state import create_train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _timed(fn, *args):
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--config", default=os.path.join(REPO, "experiments/configs/procedural_segmentation.py")
  )
  parser.add_argument("--min-strides", default="4,8", help="comma-separated strides to try")
  parser.add_argument("--repeats", type=int, default=5, help="timed rounds after the warm-up")
  parser.add_argument("--skip-dense", action="store_true", help="time the train step only")
  parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, batch 2")
  args = parser.parse_args()
  load_start = os.getloadavg()[0]

  config = config_base.load_config_file(args.config)
  config.num_devices = 1
  if args.quick:
    args.repeats = 2
    config.batch_size = 2
  devices = parallel.select_devices(config)
  task, crop = config_base.validate_config(config, len(devices))
  base = models.create_model(config.model, task.num_outputs)
  state0 = jax.device_get(create_train_state(config, base, jax.random.key(0), crop))
  batch = procedural_batch(config.batch_size, crop, task)
  images = jnp.asarray(batch["image"])
  variables = {"params": state0.params, "batch_stats": state0.batch_stats}

  variants = {"off": (False, 1)}
  for s in (int(v) for v in args.min_strides.split(",") if v):
    variants[f"min_stride={s}"] = (True, s)
  steps, dense, outputs = {}, {}, {}
  for name, (on, min_stride) in variants.items():
    c = copy.deepcopy(config)
    c.model.linear_first = on
    c.model.linear_first_min_stride = min_stride
    step_model = models.create_model(c.model, task.num_outputs, bn_axis_name=parallel.AXIS)
    steps[name] = parallel.ParallelStep(c, step_model, task, devices)
    dense[name] = dense_predictor(models.create_model(c.model, task.num_outputs), None)

  times = {name: {"train_step": [], "predict_dense": []} for name in variants}
  compile_s = {}

  def fresh_state(name):  # a device copy per call: the step may donate its input state
    return jax.block_until_ready(steps[name].put_state(jax.device_put(state0)))

  for name in variants:  # warm-up (compiles) and outputs for the agreement check
    state = fresh_state(name)
    compile_s[name] = round(_timed(steps[name], state, batch), 3)
    if not args.skip_dense:
      outputs[name] = np.asarray(dense[name](variables, images))
  for _ in range(args.repeats):
    for name in variants:
      state = fresh_state(name)
      times[name]["train_step"].append(_timed(steps[name], state, batch))
      if not args.skip_dense:
        times[name]["predict_dense"].append(_timed(dense[name], variables, images))

  result = {
    "benchmark": "linear_first",
    "config": os.path.relpath(args.config, REPO),
    "trunk": config.model.trunk,
    "head": config.model.head,
    "taps": list(base.taps),
    "tap_strides": list(base.tap_strides),
    "batch_size": int(config.batch_size),
    "points_per_image": int(config.points_per_image),
    "crop": list(crop),
    "repeats": args.repeats,
    "platform": jax.devices()[0].platform,
    "device_kind": jax.devices()[0].device_kind,
    "machine": platform.machine(),
    "cpu_count": os.cpu_count(),
    "jax": jax.__version__,
    "load_average_1m_start": load_start,
    "first_step_s_incl_compile": compile_s,
  }
  for kind in ("train_step", "predict_dense"):
    if kind == "predict_dense" and args.skip_dense:
      continue
    med = {n: statistics.median(t[kind]) for n, t in times.items()}
    result[kind] = {
      n: {
        "median_s": round(med[n], 4),
        "min_s": round(min(times[n][kind]), 4),
        "ratio_off_over_this": round(med["off"] / med[n], 3),
      }
      for n in variants
    }
  if outputs:
    result["dense_max_abs_diff_vs_off"] = {
      n: float(np.max(np.abs(outputs[n] - outputs["off"]))) for n in variants
    }
  result["load_average_1m_end"] = os.getloadavg()[0]
  print(json.dumps(result))


if __name__ == "__main__":
  main()
