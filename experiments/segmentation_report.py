"""Per-class IoU table (Markdown) and a confusion-matrix picture of a segmentation eval.

Reads ``<workdir>/eval/<split>_step<N>.json`` (written by every in-training eval and by
``pixelnet-eval``) and the class names of the dataset's module:

  python experiments/segmentation_report.py --workdir runs/camvid_cpu --dataset camvid \
      --out experiments/results/camvid_cpu

writes ``<out>_confusion.png`` (rows: ground truth, normalised per row) and prints the
Markdown table.
"""

import argparse
import glob
import importlib
import json
import os

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402


def latest_details(workdir: str, split: str) -> str:
  paths = sorted(glob.glob(os.path.join(workdir, "eval", f"{split}_step*.json")))
  if not paths:
    raise SystemExit(f"No {split}_step*.json under {workdir}/eval: run an eval first.")
  return paths[-1]


def markdown_table(details: dict, names) -> str:
  rows = ["| class | IoU | recall | share of labelled pixels |", "|---|---|---|---|"]
  confusion = np.asarray(details["confusion"], np.float64)
  share = confusion.sum(axis=1) / max(confusion.sum(), 1)
  for name, iou, acc, frac in zip(names, details["iou"], details["accuracy"], share):
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    rows.append(f"| {name} | {fmt(iou)} | {fmt(acc)} | {frac:.3%} |")
  rows.append(
    f"| **mean** | **{details['miou']:.3f}** | {details['mean_accuracy']:.3f} | "
    f"pixel accuracy {details['pixel_accuracy']:.3f} |"
  )
  return "\n".join(rows)


def confusion_picture(details: dict, names, path: str, title: str):
  confusion = np.asarray(details["confusion"], np.float64)
  normalised = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(7, 6))
  im = ax.imshow(normalised, cmap="viridis", vmin=0, vmax=1)
  ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
  ax.set_yticks(range(len(names)), names)
  ax.set_xlabel("prediction")
  ax.set_ylabel("ground truth")
  for i in range(len(names)):
    for j in range(len(names)):
      if normalised[i, j] >= 0.01:
        color = "black" if normalised[i, j] > 0.6 else "white"
        ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=6, color=color)
  ax.set_title(title)
  fig.colorbar(im, ax=ax, fraction=0.046)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--dataset", required=True, help="module of pixelnet_jax.data")
  parser.add_argument("--split", default="val")
  parser.add_argument("--out", required=True, help="prefix of the written picture")
  args = parser.parse_args()
  names = importlib.import_module(f"pixelnet_jax.data.{args.dataset}").CLASS_NAMES
  path = latest_details(args.workdir, args.split)
  with open(path) as f:
    details = json.load(f)
  title = f"{args.dataset} {args.split}, step {details['step']}: mIoU {details['miou']:.3f}"
  confusion_picture(details, names, args.out + "_confusion.png", title)
  print(f"From {os.path.relpath(path)}:\n")
  print(markdown_table(details, names))


if __name__ == "__main__":
  main()
