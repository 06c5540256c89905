"""`pixelnet-eval-boundaries`: the BSDS500 boundary benchmark on PNG edge maps.

Scores PNG edge maps (files named `<image id>.png`) against BSDS `.mat` ground
truth like the official `boundaryBench`, and writes `eval_bdry.txt`,
`eval_bdry_img.txt`, `eval_bdry_thr.txt` (official formats), `results.json` and
a PR curve PNG.

  pixelnet-eval-boundaries --pred_dir DIR --gt_dir DIR [--thresholds 99]
      [--nms | --no-nms] [--workers N] [--intersection] [--out results.json]

Accepted predictions (anything else is an error naming the file):
  * 8-bit greyscale PNG (mode L): probability = value / 255.
  * 16-bit greyscale PNG: probability = value / 65535 (finer levels are kept,
    not an error: 16 bits is the natural way to store more precision).
  * RGB PNG whose three channels are equal everywhere (a grey map saved as
    colour by some tools): read as the greyscale value / 255. An RGB PNG whose
    channels differ is an error, as is any other mode (palette, alpha, 1-bit).
A prediction must have the size of its ground truth.

Every ground truth needs a prediction and every prediction a ground truth: a
file without its partner usually means the wrong folder or an incomplete
prediction run, so both lists are reported as an error. `--intersection`
scores only the images that have both and still prints the two lists.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from pixelnet_jax import cli
from pixelnet_jax.metrics import boundaries

_PRED_EXPECTED = "an 8-bit or 16-bit greyscale PNG (or an RGB PNG with three equal channels)"


def load_prediction(path: str) -> np.ndarray:
  """Reads a PNG edge map (see the module docstring). Returns [H, W] float64 in [0, 1]."""
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"prediction {path} not found: every ground-truth "
      f"image needs a <id>.png edge map in --pred_dir."
    )
  try:
    with Image.open(path) as im:
      fmt = im.format
      if fmt == "PNG":
        im.verify()  # CRCs and chunk structure: catches most truncated or damaged files.
    with Image.open(path) as im:
      mode = im.mode
      arr = np.asarray(im)  # Decodes everything: a truncated stream raises here.
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
      f"cannot read prediction {path}: expected {_PRED_EXPECTED} ({type(e).__name__}: {e})."
    ) from e
  if fmt != "PNG":
    raise ValueError(f"prediction {path} is a {fmt} file; expected {_PRED_EXPECTED}.")
  if mode == "L" and arr.dtype == np.uint8 and arr.ndim == 2:
    return arr.astype(np.float64) / 255.0
  if mode.startswith("I") and arr.ndim == 2:  # 16-bit greyscale: I;16 (or I in old Pillow)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
      raise ValueError(f"prediction {path}: 16-bit PNG holds values outside [0, 65535].")
    return arr.astype(np.float64) / 65535.0
  if mode == "RGB" and arr.ndim == 3 and arr.shape[2] == 3:
    if not ((arr[..., 0] == arr[..., 1]) & (arr[..., 1] == arr[..., 2])).all():
      raise ValueError(
        f"prediction {path} is an RGB PNG whose channels differ; expected "
        f"{_PRED_EXPECTED} (save the edge probability as one grey channel)."
      )
    return arr[..., 0].astype(np.float64) / 255.0
  raise ValueError(
    f"prediction {path} must be {_PRED_EXPECTED}, got mode {mode} with shape {arr.shape}."
  )


def load_ground_truth(path: str) -> list[np.ndarray]:
  """Reads a BSDS `.mat`: `groundTruth` 1xN cell of structs with `Boundaries`.

  Returns the annotators' [H, W] bool boundary maps.
  """
  import scipy.io  # pylint: disable=g-import-not-at-top

  expected = (
    "a BSDS .mat with a groundTruth cell of structs holding [H, W] 0/1 Boundaries maps of one size"
  )
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
      f"cannot read ground truth {path}: expected {expected} ({type(e).__name__}: {e})."
    ) from e
  if "groundTruth" not in mat:
    names = sorted(k for k in mat if not k.startswith("__"))
    raise ValueError(
      f"ground truth {path} has no groundTruth variable (it holds {names}); expected {expected}."
    )
  try:
    raw = [np.asarray(c["Boundaries"][0, 0]) for c in np.ravel(mat["groundTruth"])]
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
      f"ground truth {path}: groundTruth is not a cell of structs with "
      f"Boundaries; expected {expected} ({type(e).__name__}: {e})."
    ) from e
  if not raw:
    raise ValueError(f"ground truth {path} holds no annotator; expected {expected}.")
  for a, m in enumerate(raw):
    if m.ndim != 2 or not m.size:
      raise ValueError(
        f"ground truth {path}: annotator {a + 1} Boundaries has shape "
        f"{m.shape}; expected {expected}."
      )
    if not (np.issubdtype(m.dtype, np.number) or m.dtype == np.bool_):
      raise ValueError(
        f"ground truth {path}: annotator {a + 1} Boundaries has dtype "
        f"{m.dtype}; expected {expected}."
      )
    if not np.isin(m, (0, 1)).all():
      raise ValueError(
        f"ground truth {path}: annotator {a + 1} Boundaries holds values "
        f"other than 0 and 1; expected {expected}."
      )
  if any(m.shape != raw[0].shape for m in raw):
    raise ValueError(
      f"ground truth {path}: annotators differ in size "
      f"({sorted({m.shape for m in raw})}); expected {expected}."
    )
  return [m.astype(bool) for m in raw]


def _listing(ids: Sequence[str], folder: str, ext: str, limit: int | None = 20) -> str:
  """'a.png, b.png (in DIR)', cut after `limit` names."""
  names = [i + ext for i in ids]
  shown = names if limit is None else names[:limit]
  more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
  return f"{', '.join(shown)}{more} (in {folder})"


def pair_files(pred_dir: str, gt_dir: str):
  """Matches `<id>.mat` of gt_dir with `<id>.png` of pred_dir.

  Returns (ids with both, ground-truth ids without a prediction, prediction ids
  without a ground truth), each sorted.
  """
  if not os.path.isdir(gt_dir):
    raise FileNotFoundError(f"--gt_dir {gt_dir} is not a directory.")
  if not os.path.isdir(pred_dir):
    raise FileNotFoundError(f"--pred_dir {pred_dir} is not a directory.")
  gt_ids = {f[:-4] for f in os.listdir(gt_dir) if f.endswith(".mat")}
  if not gt_ids:
    raise FileNotFoundError(f"no .mat ground truth in --gt_dir {gt_dir}.")
  pred_ids = {f[:-4] for f in os.listdir(pred_dir) if f.endswith(".png")}
  return (sorted(gt_ids & pred_ids), sorted(gt_ids - pred_ids), sorted(pred_ids - gt_ids))


def load_dataset(pred_dir: str, gt_dir: str, intersection: bool = False):
  """Loads every `<id>.mat` of gt_dir and its `<id>.png` of pred_dir.

  A ground truth without prediction or a prediction without ground truth is an
  error listing both kinds; with `intersection` only the pairs are scored and
  the unpaired files are printed to stderr.

  Returns (predictions, ground_truth) dicts keyed by image id.
  """
  ids, no_pred, no_gt = pair_files(pred_dir, gt_dir)
  problems = []
  if no_pred:
    problems.append(
      f"{len(no_pred)} ground truth(s) have no prediction: missing "
      f"{_listing(no_pred, pred_dir, '.png', None if intersection else 20)}"
    )
  if no_gt:
    problems.append(
      f"{len(no_gt)} prediction(s) have no ground truth: missing "
      f"{_listing(no_gt, gt_dir, '.mat', None if intersection else 20)}"
    )
  if problems and not intersection:
    raise FileNotFoundError(
      "predictions and ground truth do not pair up; "
      + "; ".join(problems)
      + ". Predict every ground-truth image and point --pred_dir/--gt_dir at matching "
      "folders, or pass --intersection to score only the images that have both."
    )
  for line in problems:
    print(
      f"pixelnet-eval-boundaries: warning: --intersection: {line}; not scored.", file=sys.stderr
    )
  if not ids:
    raise FileNotFoundError(
      f"no image has both a prediction in {pred_dir} and a ground truth in {gt_dir}."
    )
  predictions, ground_truth = {}, {}
  for i in ids:
    png = os.path.join(pred_dir, i + ".png")
    mat = os.path.join(gt_dir, i + ".mat")
    prob = load_prediction(png)
    gts = load_ground_truth(mat)
    if prob.shape != gts[0].shape:
      raise ValueError(
        f"size mismatch: {png} is {prob.shape} (rows, cols) but "
        f"{mat} is {gts[0].shape}; predict at the ground-truth size."
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


def define_flags(flag_values=flags.FLAGS) -> list[str]:
  """Defines the benchmark's flags on ``flag_values``; returns their names."""
  fv = flag_values
  flags.DEFINE_string(
    "pred_dir", None, "Directory of <id>.png edge maps (also --pred-dir).", flag_values=fv
  )
  flags.DEFINE_string(
    "gt_dir", None, "Directory of BSDS <id>.mat ground truth (also --gt-dir).", flag_values=fv
  )
  flags.DEFINE_integer("thresholds", 99, "Number of thresholds.", lower_bound=1, flag_values=fv)
  flags.DEFINE_bool("nms", False, "Apply the structured-edge NMS before thinning.", flag_values=fv)
  flags.DEFINE_integer(
    "workers", 1, "Processes scoring images in parallel.", lower_bound=1, flag_values=fv
  )
  flags.DEFINE_bool(
    "intersection",
    False,
    "Score only images with both a prediction and a ground truth (default: unpaired files "
    "are an error); the unpaired files are still listed.",
    flag_values=fv,
  )
  flags.DEFINE_string(
    "out",
    "results.json",
    "Results JSON; the tables and pr_curve.png go next to it.",
    flag_values=fv,
  )
  flags.mark_flags_as_required(["pred_dir", "gt_dir"], flag_values=fv)
  return ["pred_dir", "gt_dir", "thresholds", "nms", "workers", "intersection", "out"]


def parse_args(argv: Sequence[str]) -> flags.FlagValues:
  """The flags of ``argv`` (without the program name) on a fresh FlagValues, so that the
  benchmark can be called in-process, e.g. from tests, with the launcher's spelling."""
  fv = flags.FlagValues()
  define_flags(fv)
  fv(cli.hyphen_aliases(["pixelnet-eval-boundaries", *argv], fv))
  return fv


def main(argv: Sequence[str]) -> dict:
  """Runs the benchmark on ``argv`` (flags as on the command line); returns the results
  dict written to --out."""
  return evaluate_dirs(parse_args(argv))


def evaluate_dirs(args) -> dict:
  """The benchmark of ``args`` (parsed flags); writes --out and returns its dict."""
  predictions, ground_truth = load_dataset(
    args.pred_dir, args.gt_dir, intersection=args.intersection
  )
  _, no_pred, no_gt = pair_files(args.pred_dir, args.gt_dir)
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
    unpaired_ground_truth=no_pred,
    unpaired_predictions=no_gt,
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


def _launcher_main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    evaluate_dirs(flags.FLAGS)
  except (FileNotFoundError, ValueError, KeyError) as e:
    sys.exit(f"pixelnet-eval-boundaries: error: {e}")


def run() -> None:
  """Console-script entry point (``pixelnet-eval-boundaries``)."""
  names = define_flags()
  cli.run(
    _launcher_main,
    "BSDS500 boundary benchmark (ODS/OIS/AP) on PNG edge maps.\n\n"
    "pixelnet-eval-boundaries --pred_dir PNGS --gt_dir GT [--nms] [--thresholds 99]",
    names,
  )


if __name__ == "__main__":
  run()
