"""`pixelnet-eval-boundaries`: the BSDS500 boundary benchmark on PNG edge maps.

Scores 8-bit PNG edge maps (probability = value / 255, files named
`<image id>.png`) against BSDS `.mat` ground truth like the official
`boundaryBench`, and writes `eval_bdry.txt`, `eval_bdry_img.txt`,
`eval_bdry_thr.txt` (official formats), `results.json` and a PR curve PNG.

  pixelnet-eval-boundaries --pred-dir DIR --gt-dir DIR [--thresholds 99]
      [--nms | --no-nms] [--workers N] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from pixelnet_jax.metrics import boundaries


def load_prediction(path: str) -> np.ndarray:
  """Reads an 8-bit PNG edge map. Returns [H, W] float64 value / 255."""
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"prediction {path} not found: every ground-truth "
      f"image needs a <id>.png edge map in --pred-dir."
    )
  try:
    with Image.open(path) as im:
      mode = im.mode
      arr = np.asarray(im)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"cannot read prediction {path}: {e}") from e
  if mode != "L" or arr.dtype != np.uint8 or arr.ndim != 2:
    raise ValueError(
      f"prediction {path} must be an 8-bit grayscale PNG "
      f"(mode L), got mode {mode} with shape {arr.shape}."
    )
  return arr.astype(np.float64) / 255.0


def load_ground_truth(path: str) -> list[np.ndarray]:
  """Reads a BSDS `.mat`: `groundTruth` 1xN cell of structs with `Boundaries`.

  Returns the annotators' [H, W] bool boundary maps.
  """
  import scipy.io  # pylint: disable=g-import-not-at-top

  try:
    mat = scipy.io.loadmat(path)
    cells = mat["groundTruth"]
    maps = [np.asarray(c["Boundaries"][0, 0]).astype(bool) for c in np.ravel(cells)]
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
      f"cannot read ground truth {path}: expected a BSDS .mat "
      f"with a groundTruth cell of structs holding Boundaries "
      f"({type(e).__name__}: {e})."
    ) from e
  if not maps or any(m.ndim != 2 for m in maps):
    raise ValueError(f"ground truth {path} holds no [H, W] Boundaries map.")
  if any(m.shape != maps[0].shape for m in maps):
    raise ValueError(f"ground truth {path}: annotators differ in size.")
  return maps


def load_dataset(pred_dir: str, gt_dir: str):
  """Loads every `<id>.mat` of gt_dir and its `<id>.png` of pred_dir.

  Returns (predictions, ground_truth) dicts keyed by image id.
  """
  if not os.path.isdir(gt_dir):
    raise FileNotFoundError(f"--gt-dir {gt_dir} is not a directory.")
  if not os.path.isdir(pred_dir):
    raise FileNotFoundError(f"--pred-dir {pred_dir} is not a directory.")
  ids = sorted(f[:-4] for f in os.listdir(gt_dir) if f.endswith(".mat"))
  if not ids:
    raise FileNotFoundError(f"no .mat ground truth in --gt-dir {gt_dir}.")
  missing = [i for i in ids if not os.path.isfile(os.path.join(pred_dir, i + ".png"))]
  if missing:
    raise FileNotFoundError(
      f"missing prediction(s) {os.path.join(pred_dir, missing[0] + '.png')}"
      f" ({len(missing)} of {len(ids)} ground-truth images have no PNG in "
      f"--pred-dir)."
    )
  predictions, ground_truth = {}, {}
  for i in ids:
    png = os.path.join(pred_dir, i + ".png")
    mat = os.path.join(gt_dir, i + ".mat")
    prob = load_prediction(png)
    gts = load_ground_truth(mat)
    if prob.shape != gts[0].shape:
      raise ValueError(
        f"size mismatch: {png} is {prob.shape} (rows, cols) but {mat} is {gts[0].shape}."
      )
    predictions[i] = prob
    ground_truth[i] = gts
  return predictions, ground_truth


def write_tables(scores: boundaries.BoundaryScores, out_dir: str) -> None:
  """Writes eval_bdry.txt, eval_bdry_img.txt, eval_bdry_thr.txt (official)."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "eval_bdry_img.txt"), "w") as f:
    for i, (t, r, p, fm) in enumerate(scores.image_best):
      f.write("%10d %10g %10g %10g %10g\n" % (i + 1, t, r, p, fm))
  with open(os.path.join(out_dir, "eval_bdry_thr.txt"), "w") as f:
    for row in zip(scores.thresholds, scores.recall, scores.precision, scores.f):
      f.write("%10g %10g %10g %10g\n" % row)
  with open(os.path.join(out_dir, "eval_bdry.txt"), "w") as f:
    f.write(
      "%10g %10g %10g %10g %10g %10g %10g %10g\n"
      % (
        scores.ods_threshold,
        scores.ods_recall,
        scores.ods_precision,
        scores.ods_f,
        scores.ois_recall,
        scores.ois_precision,
        scores.ois_f,
        scores.ap,
      )
    )


def draw_pr_curve(scores: boundaries.BoundaryScores, path: str, size: int = 480) -> None:
  """PR curve with iso-F lines (F = 0.1 .. 0.9) and the ODS point, as a PNG."""
  margin = 50
  plot = size - 2 * margin
  img = Image.new("RGB", (size, size), "white")
  draw = ImageDraw.Draw(img)

  def xy(r, p):
    return margin + r * plot, margin + (1 - p) * plot

  for k in range(11):  # grid
    v = k / 10
    draw.line([xy(v, 0), xy(v, 1)], fill=(235, 235, 235))
    draw.line([xy(0, v), xy(1, v)], fill=(235, 235, 235))
    draw.text((xy(v, 0)[0] - 8, size - margin + 6), f"{v:.1f}", fill="black")
    draw.text((8, xy(0, v)[1] - 6), f"{v:.1f}", fill="black")
  for fm in np.arange(1, 10) / 10:  # iso-F: p = f r / (2 r - f), r > f / 2
    r = np.linspace(fm / 2 + 1e-3, 1, 200)
    p = fm * r / (2 * r - fm)
    pts = [xy(a, b) for a, b in zip(r, p) if b <= 1]
    if len(pts) > 1:
      draw.line(pts, fill=(140, 200, 140))
  draw.rectangle([xy(0, 1), xy(1, 0)], outline="black")
  keep = scores.recall > 0
  pts = [xy(r, p) for r, p in zip(scores.recall[keep], scores.precision[keep])]
  if len(pts) > 1:
    draw.line(pts, fill=(200, 0, 0), width=2)
  ox, oy = xy(scores.ods_recall, scores.ods_precision)
  draw.ellipse([ox - 4, oy - 4, ox + 4, oy + 4], outline=(200, 0, 0), width=2)
  draw.text(
    (margin, 15),
    f"ODS {scores.ods_f:.3f}  OIS {scores.ois_f:.3f}  AP {scores.ap:.3f}",
    fill="black",
  )
  draw.text((size // 2 - 20, size - 18), "Recall", fill="black")
  draw.text((4, margin - 20), "Precision", fill="black")
  img.save(path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    prog="pixelnet-eval-boundaries",
    description="BSDS500 boundary benchmark (ODS/OIS/AP) on PNG edge maps.",
  )
  parser.add_argument("--pred-dir", required=True, help="directory of <id>.png 8-bit edge maps")
  parser.add_argument("--gt-dir", required=True, help="directory of BSDS <id>.mat ground truth")
  parser.add_argument(
    "--thresholds", type=int, default=99, help="number of thresholds (default 99)"
  )
  parser.add_argument(
    "--nms",
    action=argparse.BooleanOptionalAction,
    default=False,
    help="apply the structured-edge NMS before thinning",
  )
  parser.add_argument("--workers", type=int, default=1, help="processes scoring images in parallel")
  parser.add_argument(
    "--out", default="results.json", help="results JSON; the tables and pr_curve.png go next to it"
  )
  args = parser.parse_args(argv)
  if args.thresholds < 1:
    parser.error(f"--thresholds must be >= 1, got {args.thresholds}.")
  if args.workers < 1:
    parser.error(f"--workers must be >= 1, got {args.workers}.")
  return args


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs the benchmark; returns the results dict written to --out."""
  args = parse_args(argv)
  predictions, ground_truth = load_dataset(args.pred_dir, args.gt_dir)
  scores = boundaries.evaluate_boundaries(
    predictions, ground_truth, num_thresholds=args.thresholds, nms=args.nms, workers=args.workers
  )
  out_dir = os.path.dirname(os.path.abspath(args.out))
  write_tables(scores, out_dir)
  draw_pr_curve(scores, os.path.join(out_dir, "pr_curve.png"))
  results = scores.summary()
  results.update(
    num_images=len(scores.image_ids),
    num_thresholds=args.thresholds,
    nms=args.nms,
    per_threshold=[
      {"threshold": float(t), "recall": float(r), "precision": float(p), "f": float(f)}
      for t, r, p, f in zip(scores.thresholds, scores.recall, scores.precision, scores.f)
    ],
    per_image=[
      {
        "id": i,
        "threshold": float(b[0]),
        "recall": float(b[1]),
        "precision": float(b[2]),
        "f": float(b[3]),
      }
      for i, b in zip(scores.image_ids, scores.image_best)
    ],
  )
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)
  print(
    f"ODS F {scores.ods_f:.4f} at threshold {scores.ods_threshold:.4f} "
    f"(R {scores.ods_recall:.4f}, P {scores.ods_precision:.4f})"
  )
  print(f"OIS F {scores.ois_f:.4f} (R {scores.ois_recall:.4f}, P {scores.ois_precision:.4f})")
  print(f"AP    {scores.ap:.4f}")
  print(f"wrote {args.out} and eval_bdry*.txt, pr_curve.png in {out_dir}")
  return results


def run() -> None:
  """Console-script entry point."""
  try:
    main(sys.argv[1:])
  except (FileNotFoundError, ValueError, KeyError) as e:
    sys.exit(f"pixelnet-eval-boundaries: error: {e}")


if __name__ == "__main__":
  run()
