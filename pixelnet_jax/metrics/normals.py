"""Surface normal metrics: angular error in degrees, pooled over a split.

The protocol (Eigen & Fergus; Fouhey et al.; PixelNet): both maps renormalised,
cosine clipped to [-1, 1], angle in degrees, only valid pixels, statistics over
all valid pixels of the split (not per image). A split accumulates by
concatenating the per-batch error arrays, which keeps the median exact.
Host-side NumPy; JAX arrays are accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLDS = (11.25, 22.5, 30.0)
_NORM_FLOOR = 1e-12


def _unit(vectors: np.ndarray) -> np.ndarray:
  """Renormalises [..., 3]; zero-length vectors stay zero (no NaN)."""
  norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
  return vectors / np.maximum(norm, _NORM_FLOOR)


def angular_errors(pred, gt, valid) -> np.ndarray:
  """Angle between predicted and true normals at the valid pixels.

  A zero-length vector (no direction) has cosine 0 with everything, i.e. it
  counts as a 90 degree error instead of producing NaN.

  Args:
    pred: [..., 3] float predicted normals (any batch shape, any length).
    gt: [..., 3] float true normals, same shape.
    valid: [...] bool, pixels with ground truth (e.g. ``normals_valid``).

  Returns:
    [V] float64 degrees in [0, 180], V = number of valid pixels, in row-major order.
  """
  pred = np.asarray(pred, np.float64)
  gt = np.asarray(gt, np.float64)
  valid = np.asarray(valid)
  if pred.shape != gt.shape or pred.shape[-1:] != (3,):
    raise ValueError(f"`pred` {pred.shape} and `gt` {gt.shape} must both have shape [..., 3].")
  if valid.shape != gt.shape[:-1]:
    raise ValueError(
      f"`valid` shape {valid.shape} must equal the normals' shape without "
      f"the last axis, {gt.shape[:-1]}."
    )
  valid = valid.astype(bool)
  cosine = np.sum(_unit(pred[valid]) * _unit(gt[valid]), axis=-1)
  return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def scores(errors) -> dict[str, float]:
  """Pooled statistics of angular errors.

  Args:
    errors: [V] degrees over all valid pixels of a split (or a list of such
      arrays, concatenated).

  Returns:
    dict of floats: ``mean``, ``median``, ``rmse`` (degrees) and
    ``within_11_25``, ``within_22_5``, ``within_30`` (percent of pixels with
    error strictly below the threshold). NaN when there are no errors.
  """
  if isinstance(errors, (list, tuple)):
    errors = concatenate(errors)
  errors = np.asarray(errors, np.float64).reshape(-1)
  names = ("mean", "median", "rmse") + tuple(_within_name(t) for t in THRESHOLDS)
  if errors.size == 0:
    return {name: float("nan") for name in names}
  result = {
    "mean": float(errors.mean()),
    "median": float(np.median(errors)),
    "rmse": float(np.sqrt(np.mean(errors**2))),
  }
  for t in THRESHOLDS:
    result[_within_name(t)] = float(100.0 * np.mean(errors < t))
  return result


def concatenate(errors: Sequence[np.ndarray]) -> np.ndarray:
  """Pools per-batch error arrays: [V_1], [V_2], ... -> [V_1 + V_2 + ...]."""
  if not len(errors):
    return np.zeros((0,), np.float64)
  return np.concatenate([np.asarray(e).reshape(-1) for e in errors])


def _within_name(threshold: float) -> str:
  return "within_" + f"{threshold:g}".replace(".", "_")
