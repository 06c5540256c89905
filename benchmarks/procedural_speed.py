"""Speed of the procedural dataset: milliseconds per generated example, printed as JSON.

  python benchmarks/procedural_speed.py [--num 20] [--sizes 64 128 224]

Times ``ProceduralDataset[i]`` (scene sampling, ray casting, texturing, edges) in one
process on one core; each size first renders one warm-up example.
"""

import argparse
import json
import platform
import time

import numpy as np

from pixelnet_jax.data.procedural import ProceduralDataset


def time_size(size: int, num: int) -> dict:
  ds = ProceduralDataset("train", size, num_examples=num + 1, seed=0)
  ds[num]  # warm-up
  times = []
  for i in range(num):
    start = time.perf_counter()
    ds[i]
    times.append(time.perf_counter() - start)
  ms = 1e3 * np.array(times)
  return dict(
    size=size,
    num=num,
    ms_mean=round(float(ms.mean()), 2),
    ms_median=round(float(np.median(ms)), 2),
    ms_max=round(float(ms.max()), 2),
  )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num", type=int, default=20, help="examples timed per size")
  parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
  args = parser.parse_args()
  results = [time_size(size, args.num) for size in args.sizes]
  print(
    json.dumps(
      dict(
        benchmark="procedural_speed",
        machine=platform.processor() or platform.machine(),
        results=results,
      ),
      indent=1,
    )
  )


if __name__ == "__main__":
  main()
