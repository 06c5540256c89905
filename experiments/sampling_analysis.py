"""Tables and plots of the sampling analysis from ``pixelnet-sweep`` work directories.

Every run folder ``<sweep>/<point>__seed=<s>/`` holds ``metrics.jsonl``; runs are grouped
by ``<sweep>/<point>`` over seeds. For each group: the eval metric at each eval step (mean
and min-max over seeds) and the training seconds to reach it (summed from the logged
steps/s, evals excluded). Writes ``<out>.png`` (metric vs step and vs training seconds)
and prints a Markdown table:

  python experiments/sampling_analysis.py --out experiments/results/sampling_pixels \
      runs/sweep_pixels runs/sweep_dense
"""

import argparse
import collections
import json
import os
import re

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402


def read_run(path: str, metric: str) -> dict:
  """{step: metric} of the evals and {step: training seconds so far} of a run folder."""
  evals, seconds, clock, last = {}, {}, 0.0, 0
  with open(os.path.join(path, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      if row["split"] == "train" and row["step"] > last:
        clock += (row["step"] - last) / row["steps_per_sec"]
        last = row["step"]
        seconds[last] = clock
        pixels = row["pixels_per_sec"] / row["steps_per_sec"]
      elif row["split"] == "eval":
        evals[row["step"]] = row[metric]
  return {"evals": evals, "seconds": seconds, "pixels_per_step": pixels}


def natural(name: str) -> list:
  """Sort key: numbers in a name compare as numbers (4 < 16 < 256)."""
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def groups(sweeps: list[str], metric: str) -> dict:
  out = collections.defaultdict(list)
  for sweep in sweeps:
    for name in sorted(os.listdir(sweep), key=natural):
      path = os.path.join(sweep, name)
      if os.path.isfile(os.path.join(path, "metrics.jsonl")):
        point = re.sub(r"__seed=\d+$", "", name)
        label = f"{os.path.basename(os.path.normpath(sweep))}/{point}"
        out[label].append(read_run(path, metric))
  return out


def table(grouped: dict, metric: str) -> str:
  rows = [
    f"| run | seeds | pixels / step | final {metric} (mean, min-max) | training s (mean) |",
    "|---|---|---|---|---|",
  ]
  for label, runs in grouped.items():
    final = [r["evals"][max(r["evals"])] for r in runs]
    secs = [r["seconds"][max(r["seconds"])] for r in runs]
    rows.append(
      f"| {label} | {len(runs)} | {runs[0]['pixels_per_step']:.0f} | {np.mean(final):.4f} "
      f"({min(final):.4f}-{max(final):.4f}) | {np.mean(secs):.0f} |"
    )
  return "\n".join(rows)


def plot(grouped: dict, metric: str, path: str):
  fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
  for label, runs in grouped.items():
    steps = sorted(set.intersection(*(set(r["evals"]) for r in runs)))
    values = np.array([[r["evals"][s] for s in steps] for r in runs])
    times = np.array([[r["seconds"].get(s, np.nan) for s in steps] for r in runs]).mean(0)
    for ax, x in ((by_step, steps), (by_time, times)):
      line = ax.plot(x, values.mean(0), marker="o", label=label)[0]
      ax.fill_between(x, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
  by_step.set_xlabel("step")
  by_time.set_xlabel("training seconds (evals excluded)")
  for ax in (by_step, by_time):
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
  by_time.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("sweeps", nargs="+")
  parser.add_argument("--metric", default="miou")
  parser.add_argument("--out", required=True, help="prefix of the written picture")
  args = parser.parse_args()
  grouped = groups(args.sweeps, args.metric)
  plot(grouped, args.metric, args.out + ".png")
  print(table(grouped, args.metric))


if __name__ == "__main__":
  main()
