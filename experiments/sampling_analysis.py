"""Tables and plots of the sampling analysis from ``pixelnet-sweep`` work directories.

Every run folder ``<sweep>/<point>__seed=<s>/`` holds ``metrics.jsonl``; runs are grouped
by ``<sweep>/<point>`` over seeds. For each group: the eval metric at each eval step (mean
and min-max over seeds) and the training seconds to reach it (summed from the logged
steps/s, evals excluded). Writes ``<out>.png`` (metric vs step and vs training seconds)
and prints a Markdown table:

  python experiments/sampling_analysis.py --out experiments/results/sampling_pixels \
      runs/sweep_pixels runs/sweep_dense

``--extra FILE:KEY`` adds a column of a number that a later step wrote into each run
folder (mean and min-max over seeds), e.g. the BSDS benchmark of
``experiments/bsds_val_subset_ods.sh``: ``--extra ods_val25/results.json:ods_f``.
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


def read_run(path: str, metric: str, extras: tuple[str, ...] = ()) -> dict:
  """{step: metric} of the evals and {step: training seconds so far} of a run folder,
  plus each ``FILE:KEY`` of ``extras`` read from ``<run>/FILE`` (None where missing)."""
  extra = {}
  for spec in extras:
    file, _, key = spec.rpartition(":")
    try:
      with open(os.path.join(path, file)) as f:
        extra[spec] = float(json.load(f)[key])
    except (OSError, KeyError, ValueError):
      extra[spec] = None
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
  return {"evals": evals, "seconds": seconds, "pixels_per_step": pixels, "extra": extra}


def natural(name: str) -> list:
  """Sort key: numbers in a name compare as numbers (4 < 16 < 256)."""
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def groups(sweeps: list[str], metric: str, extras: tuple[str, ...] = ()) -> dict:
  out = collections.defaultdict(list)
  for sweep in sweeps:
    for name in sorted(os.listdir(sweep), key=natural):
      path = os.path.join(sweep, name)
      if os.path.isfile(os.path.join(path, "metrics.jsonl")):
        point = re.sub(r"__seed=\d+$", "", name)
        label = f"{os.path.basename(os.path.normpath(sweep))}/{point}"
        out[label].append(read_run(path, metric, extras))
  return out


def _spread(values: list) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return "–"
  return f"{np.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def table(grouped: dict, metric: str, extras: tuple[str, ...] = ()) -> str:
  rows = [
    f"| run | seeds | pixels / step | final {metric} (mean, min-max) | training s (mean) |"
    + "".join(f" {spec.rpartition(':')[2]} (mean, min-max) |" for spec in extras),
    "|---|---|---|---|---|" + "---|" * len(extras),
  ]
  for label, runs in grouped.items():
    final = [r["evals"][max(r["evals"])] for r in runs]
    secs = [r["seconds"][max(r["seconds"])] for r in runs]
    rows.append(
      f"| {label} | {len(runs)} | {runs[0]['pixels_per_step']:.0f} | {_spread(final)} "
      f"| {np.mean(secs):.0f} |"
      + "".join(f" {_spread([r['extra'][spec] for r in runs])} |" for spec in extras)
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
  parser.add_argument(
    "--extra", action="append", default=[], help="FILE:KEY of a JSON number in each run folder"
  )
  args = parser.parse_args()
  grouped = groups(args.sweeps, args.metric, tuple(args.extra))
  plot(grouped, args.metric, args.out + ".png")
  print(table(grouped, args.metric, tuple(args.extra)))


if __name__ == "__main__":
  main()
