"""Semantic segmentation metrics: a confusion matrix accumulated over a split.

Confusion matrices of batches add up, so a split is scored by summing the
per-batch matrices and calling ``scores`` once. Host-side NumPy; JAX arrays are
accepted (and copied to the host).
"""

from __future__ import annotations

import numpy as np


def _check_ids(values: np.ndarray, num_classes: int, name: str, fix: str):
  bad = values[(values < 0) | (values >= num_classes)]
  if bad.size:
    raise ValueError(
      f"{name} holds class id {int(bad[0])} (of {np.unique(bad).size} distinct bad "
      f"values, e.g. {np.unique(bad)[:5].tolist()}) outside [0, {num_classes}); {fix}"
    )


def check_label_ids(
  label, num_classes: int, ignore_label: int = 255, name: str = "`label`"
) -> None:
  """Raises a ValueError naming the first class id outside [0, num_classes) that is
  not ``ignore_label`` (host-side check of a label map of any shape)."""
  label = np.asarray(label)
  _check_ids(
    label[label != ignore_label],
    num_classes,
    name,
    f"set `num_classes` to the dataset's class count or map the value to the "
    f"ignore label {ignore_label}.",
  )


def confusion_matrix(
  pred, label, num_classes: int, ignore_label: int = 255, valid=None
) -> np.ndarray:
  """Counts (ground truth, prediction) pairs over the labelled pixels.

  Args:
    pred: [...] int predicted class ids in [0, num_classes) (any batch shape).
    label: [...] int ground-truth class ids, ``ignore_label`` where unlabelled;
      same shape as ``pred``.
    num_classes: C.
    ignore_label: pixels with this label are not counted.
    valid: optional [...] bool; pixels where it is false (padding) are not
      counted either.

  Returns:
    [C, C] int64, rows = ground truth, columns = prediction.

  Raises:
    ValueError: on shape mismatch, or a class id outside [0, C) in ``label``
      (other than ``ignore_label``) or in ``pred``.
  """
  num_classes = int(num_classes)
  if num_classes < 1:
    raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
  pred = np.asarray(pred)
  label = np.asarray(label)
  if pred.shape != label.shape:
    raise ValueError(
      f"`pred` shape {pred.shape} must equal `label` shape {label.shape} "
      "(resize predictions to the label resolution first)."
    )
  for name, arr in (("pred", pred), ("label", label)):
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
      raise TypeError(f"`{name}` must hold integer class ids, got dtype {arr.dtype}.")
  keep = label != ignore_label
  if valid is not None:
    valid = np.asarray(valid)
    if valid.shape != label.shape:
      raise ValueError(f"`valid` shape {valid.shape} must equal `label` shape {label.shape}.")
    keep &= valid.astype(bool)
  check_label_ids(label, num_classes, ignore_label)
  gt = label[keep].astype(np.int64)
  pr = pred[keep].astype(np.int64)
  _check_ids(pr, num_classes, "`pred`", "predictions must be argmax ids of a C-way output.")
  counts = np.bincount(gt * num_classes + pr, minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """num / den, NaN where den == 0 (without warnings)."""
  num = np.asarray(num, np.float64)
  den = np.asarray(den, np.float64)
  out = np.full(np.broadcast(num, den).shape, np.nan)
  np.divide(num, den, out=out, where=den > 0)
  return out


def _nanmean(values: np.ndarray) -> float:
  finite = values[~np.isnan(values)]
  return float(finite.mean()) if finite.size else float("nan")


def scores(confusion) -> dict[str, object]:
  """Split-level scores of a confusion matrix.

  Args:
    confusion: [C, C] counts, rows = ground truth, columns = prediction.

  Returns:
    dict with ``miou`` (mean IoU over classes present in the ground truth or the
    prediction), ``iou`` ([C] float64, NaN for classes absent from both),
    ``pixel_accuracy``, ``mean_accuracy`` (mean recall over classes present in
    the ground truth) and ``accuracy`` ([C] per-class recall, NaN where absent
    from the ground truth). Floats are NaN when nothing was counted.
  """
  confusion = np.asarray(confusion, np.float64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f"`confusion` must be a square [C, C] matrix, got {confusion.shape}.")
  true_pos = np.diag(confusion)
  gt_count = confusion.sum(axis=1)
  pred_count = confusion.sum(axis=0)
  iou = _ratio(true_pos, gt_count + pred_count - true_pos)
  accuracy = _ratio(true_pos, gt_count)
  return {
    "miou": _nanmean(iou),
    "pixel_accuracy": float(_ratio(true_pos.sum(), confusion.sum())),
    "mean_accuracy": _nanmean(accuracy),
    "iou": iou,
    "accuracy": accuracy,
  }


def compute(
  pred, label, num_classes: int, ignore_label: int = 255, valid: np.ndarray | None = None
) -> dict[str, object]:
  """One-shot ``scores(confusion_matrix(...))`` for a whole split in memory."""
  return scores(confusion_matrix(pred, label, num_classes, ignore_label, valid))
