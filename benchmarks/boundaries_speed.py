"""Seconds per image of the BSDS boundary benchmark (99 thresholds); prints JSON.

Scores the official benchmark's test edge maps (`bsds_bench/png`) and a few
BSDS500 val images with synthetic edge maps (the annotators' mean boundary map,
blurred, plus noise: thick, noisy responses like an un-suppressed detector),
serially (`workers=1`, wall and CPU time) and with `--workers` processes.

  PIXELNET_TEST_DATA=/path/to/data python benchmarks/boundaries_speed.py
"""

import argparse
import json
import os
import time

import numpy as np
from scipy import ndimage

from pixelnet_jax import eval_boundaries
from pixelnet_jax.metrics import boundaries


def synthetic_prediction(gts, seed):
  """Blurred mean boundary map plus noise, quantised to 8 bits. [H, W]."""
  rng = np.random.default_rng(seed)
  mean = np.mean([g.astype(np.float64) for g in gts], axis=0)
  prob = ndimage.gaussian_filter(mean, 1.5) * 4 + 0.15 * rng.random(mean.shape)
  prob = ndimage.gaussian_filter(prob, 0.7)
  return np.round(np.clip(prob, 0, 1) * 255) / 255


def load_sets(data_dir, num_val):
  bench = os.path.join(data_dir, "bsds_bench")
  sets = {
    "bsds_bench_png": eval_boundaries.load_dataset(
      os.path.join(bench, "png"), os.path.join(bench, "groundTruth")
    )
  }
  val_dir = os.path.join(data_dir, "BSR/BSDS500/data/groundTruth/val")
  ids = sorted(f[:-4] for f in os.listdir(val_dir) if f.endswith(".mat"))
  preds, gts = {}, {}
  for k, i in enumerate(ids[:num_val]):
    gts[i] = eval_boundaries.load_ground_truth(os.path.join(val_dir, i + ".mat"))
    preds[i] = synthetic_prediction(gts[i], k)
  sets["val_synthetic"] = (preds, gts)
  return sets


def time_set(preds, gts, thresholds, nms, workers):
  n = len(gts)
  row = {
    "images": n,
    "nms": nms,
    "mean_machine_pixels_at_lowest_threshold": float(
      np.mean(
        [
          boundaries.thin(
            (boundaries.edge_nms(p) if nms else p) >= boundaries.thresholds(thresholds)[0]
          ).sum()
          for p in preds.values()
        ]
      )
    ),
  }
  t0, c0 = time.perf_counter(), time.process_time()
  serial = boundaries.evaluate_boundaries(preds, gts, thresholds, nms=nms)
  row["serial_wall_s_per_image"] = (time.perf_counter() - t0) / n
  row["serial_cpu_s_per_image"] = (time.process_time() - c0) / n
  if workers > 1:
    t0 = time.perf_counter()
    par = boundaries.evaluate_boundaries(preds, gts, thresholds, nms=nms, workers=workers)
    row[f"workers{workers}_wall_s_per_image"] = (time.perf_counter() - t0) / n
    assert par.summary() == serial.summary()
  row.update({k: round(v, 4) for k, v in serial.summary().items() if k in ("ods_f", "ois_f", "ap")})
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--data", default=os.environ.get("PIXELNET_TEST_DATA"))
  parser.add_argument("--thresholds", type=int, default=99)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--num-val", type=int, default=5)
  args = parser.parse_args()
  if not args.data:
    raise SystemExit("set PIXELNET_TEST_DATA or --data to the shared data.")
  # Compile the numba kernels outside the timings.
  boundaries.correspond_pixels(np.eye(8, dtype=bool), np.eye(8, dtype=bool))
  results = {
    "thresholds": args.thresholds,
    "cpu_count": os.cpu_count(),
    "load_average_1min": os.getloadavg()[0],
    "runs": {},
  }
  for name, (preds, gts) in load_sets(args.data, args.num_val).items():
    for nms in (False, True):
      key = f"{name}{'_nms' if nms else ''}"
      results["runs"][key] = time_set(preds, gts, args.thresholds, nms, args.workers)
  print(json.dumps(results, indent=2))


if __name__ == "__main__":
  main()
