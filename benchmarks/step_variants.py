"""Times the train step of one config under several variants, side by side in one run.

Each ``--variant LABEL=key:value;key:value`` changes config keys (Python literals, or
bare strings) of the base config; the first variant is the reference of the ratios.
Every variant gets its own compiled step from the same initial parameters and the same
host batch; the timed rounds are interleaved (round r times every variant once) so that
machine load hits all of them alike. Per variant it prints compile time, median and min
step seconds, pixels/s, XLA's memory figures for the compiled step (arguments, outputs,
temporaries), and the ratios to the reference. ``--memory_only LABEL`` compiles a variant
for its memory figures without timing it (a dense step at paper size takes minutes).

    # fp32 vs bf16 at paper size (VGG-16-BN, 5 x 2,000 px at 224^2):
    python benchmarks/step_variants.py --config experiments/configs/default.py \\
        --variant fp32=model.dtype:'float32' --variant bf16=model.dtype:'bfloat16'
    # step time vs pixels per image:
    python benchmarks/step_variants.py --config experiments/configs/default.py \\
        --variant 500=points_per_image:500 --variant 8000=points_per_image:8000
    # sampled vs dense memory (dense compiled only):
    python benchmarks/step_variants.py --config experiments/configs/default.py \\
        --variant sampled=task.sampling:'uniform' --variant dense=task.sampling:'dense' \\
        --memory_only dense
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import platform
import statistics
import time

import jax
import numpy as np
from bench_common import memory_stats, procedural_batch

from pixelnet_jax import config_base, models, parallel
from pixelnet_jax.state import create_train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_variant(text: str) -> tuple[str, dict]:
  """'LABEL=key:value;key:value' -> (LABEL, {key: value}); values are Python literals
  where they parse as one ('8000', "'bfloat16'", 'False', '(64, 64)'), else strings."""
  label, sep, body = text.partition("=")
  if not sep or not label:
    raise ValueError(f"--variant must be LABEL=key:value[;key:value], got {text!r}.")
  overrides = {}
  for item in filter(None, body.split(";")):
    key, sep, value = item.partition(":")
    if not sep:
      raise ValueError(f"--variant {label}: {item!r} is not key:value.")
    try:
      overrides[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      overrides[key.strip()] = value.strip()
  return label, overrides


def apply_overrides(config, overrides: dict):
  c = copy.deepcopy(config)
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = c
    for part in parents:
      node = node[part]
    if leaf not in node:
      raise KeyError(f"--variant key {key!r} is not in the config.")
    node[leaf] = value
  return c


def _timed(step, state, batch) -> float:
  start = time.perf_counter()
  jax.block_until_ready(step(state, batch))
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default=os.path.join(REPO, "experiments/configs/default.py"))
  parser.add_argument("--variant", action="append", default=[], help="LABEL=key:value;...")
  parser.add_argument("--memory_only", default="", help="comma-separated labels not timed")
  parser.add_argument("--rounds", type=int, default=3, help="timed rounds after the warm-up")
  args = parser.parse_args()
  variants = dict(parse_variant(v) for v in args.variant) or {"base": {}}
  memory_only = set(filter(None, args.memory_only.split(",")))
  load_start = os.getloadavg()[0]

  base = config_base.load_config_file(args.config)
  base.num_devices = 1
  devices = parallel.select_devices(base)
  built = {}
  for label, overrides in variants.items():
    c = apply_overrides(base, overrides)
    task, crop = config_base.validate_config(c, len(devices))
    step_model = models.create_model(c.model, task.num_outputs, bn_axis_name=parallel.AXIS)
    state0 = jax.device_get(
      create_train_state(c, models.create_model(c.model, task.num_outputs), jax.random.key(0), crop)
    )
    batch = procedural_batch(c.batch_size, crop, task)
    step = parallel.ParallelStep(c, step_model, task, devices)
    pixels = int(c.batch_size) * (crop[0] * crop[1] if task.dense else int(c.points_per_image))
    built[label] = dict(step=step, state0=state0, batch=batch, pixels=pixels, config=c)

  def fresh_state(label):  # a device copy per call: the step donates its input state
    b = built[label]
    return jax.block_until_ready(b["step"].put_state(jax.device_put(b["state0"])))

  results = {}
  for label, b in built.items():
    c = b["config"]
    results[label] = {
      "overrides": variants[label],
      "pixels_per_step": b["pixels"],
      "dtype": c.model.dtype,
      "sampling": c.task.sampling,
    }
    start = time.perf_counter()
    results[label]["memory"] = memory_stats(
      b["step"].lower(fresh_state(label), b["batch"]).compile()
    )
    results[label]["lower_and_compile_s"] = round(time.perf_counter() - start, 3)
    if label not in memory_only:
      results[label]["first_step_s"] = round(_timed(b["step"], fresh_state(label), b["batch"]), 3)
  times = {label: [] for label in built if label not in memory_only}
  for _ in range(args.rounds):
    for label in times:
      times[label].append(_timed(built[label]["step"], fresh_state(label), built[label]["batch"]))
  for label, values in times.items():
    median = statistics.median(values)
    results[label].update(
      step_s_median=round(median, 4),
      step_s_min=round(min(values), 4),
      pixels_per_s=round(built[label]["pixels"] / median, 1),
    )

  reference = next(iter(built))
  ratios = {}
  for label, r in results.items():
    if label == reference:
      continue
    entry = {}
    if "step_s_median" in r and "step_s_median" in results[reference]:
      entry["step_time_vs_reference"] = round(
        r["step_s_median"] / results[reference]["step_s_median"], 3
      )
    mem, ref_mem = r.get("memory") or {}, results[reference].get("memory") or {}
    if mem.get("temp_size_mb") and ref_mem.get("temp_size_mb"):
      entry["temp_memory_vs_reference"] = round(mem["temp_size_mb"] / ref_mem["temp_size_mb"], 3)
    ratios[label] = entry
  print(
    json.dumps(
      {
        "benchmark": "step_variants",
        "config": os.path.relpath(args.config.partition(":")[0], REPO),
        "reference": reference,
        "rounds": args.rounds,
        "variants": results,
        "ratios": ratios,
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "load_average_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "numpy": np.__version__,
      },
      indent=1,
    )
  )


if __name__ == "__main__":
  main()
