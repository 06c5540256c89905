"""Pixel samplers: a PRNG key in, a fixed number of pixel coordinates out.

Every sampler works on one image and returns ``PixelSample(coords, mask)`` of a
static size, so a train step compiles once; batch images with ``jax.vmap`` (the
key split per image). ``num_points`` (and ``num_strata``) must be static under
``jax.jit``.

Pixels are drawn without replacement while enough exist; when a stratum has
fewer pixels than its quota, every pixel of it is taken once and the rest of the
quota is drawn from it with replacement. ``mask`` is false only where there is
nothing valid to sample (then ``coords`` is (0, 0)).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class PixelSample(NamedTuple):
  """Sampled pixels of one image.

  Attributes:
    coords: [N, 2] int32 (row, col).
    mask: [N] bool, false only where no valid pixel could be sampled.
  """

  coords: jax.Array
  mask: jax.Array


# ----------------------------------------------------------------------------
# Validation (runs at trace time on static shapes and Python values).


def _check_num(value, name: str) -> int:
  if isinstance(value, (jax.Array, np.ndarray)) and not np.ndim(value) == 0:
    raise TypeError(f"`{name}` must be a Python int, got an array of shape {np.shape(value)}.")
  try:
    as_int = int(value)
  except (TypeError, jax.errors.ConcretizationTypeError) as e:
    raise TypeError(
      f"`{name}` must be a static Python int (mark it static under jax.jit), got {value!r}."
    ) from e
  if as_int != value or as_int < 1:
    raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
  return as_int


def _check_map(array, name: str, kind: str):
  if array.ndim != 2:
    raise ValueError(
      f"`{name}` must have shape [H, W] for one image, got {tuple(array.shape)}; "
      "batch images with jax.vmap."
    )
  ok = {
    "bool": array.dtype == jnp.bool_,
    "int": jnp.issubdtype(array.dtype, jnp.integer),
    "float": jnp.issubdtype(array.dtype, jnp.floating),
    "number": jnp.issubdtype(array.dtype, jnp.number) or array.dtype == jnp.bool_,
  }[kind]
  if not ok:
    raise TypeError(f"`{name}` must be a {kind} array, got dtype {array.dtype}.")


def _check_fractions(fractions, num_strata: int):
  fractions_arr = jnp.asarray(fractions, dtype=jnp.float32)
  if fractions_arr.shape != (num_strata,):
    raise ValueError(
      f"`fractions` must have one entry per stratum, shape ({num_strata},), "
      f"got {tuple(fractions_arr.shape)}."
    )
  try:
    concrete = np.asarray(fractions, dtype=np.float64)
  except (TypeError, jax.errors.TracerArrayConversionError):
    return fractions_arr  # Traced: shape checked, values trusted.
  if np.any(concrete < 0) or not np.isclose(concrete.sum(), 1.0, atol=1e-4):
    raise ValueError(
      f"`fractions` must be non-negative and sum to 1, got {concrete.tolist()} "
      f"(sum {concrete.sum():.6g})."
    )
  return fractions_arr


# ----------------------------------------------------------------------------
# Samplers.


def _quotas(present, fractions, num_points: int):
  """Integer points per stratum summing to ``num_points`` (largest remainder).

  Empty strata get nothing; their share goes to the others in proportion to
  their fractions (equally if those are all zero).
  """
  weights = fractions * present
  total = weights.sum()
  present_f = present.astype(jnp.float32)
  weights = jnp.where(
    total > 0,
    weights / jnp.where(total > 0, total, 1.0),
    present_f / jnp.maximum(present_f.sum(), 1.0),
  )
  exact = weights * num_points
  base = jnp.floor(exact).astype(jnp.int32)
  remainder = num_points - base.sum()
  order = jnp.argsort(-(exact - base), stable=True)
  rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
  quotas = base + (rank < remainder).astype(jnp.int32)
  return jnp.where(present, quotas, 0)


def stratified(key, strata, num_points: int, num_strata: int, fractions=None) -> PixelSample:
  """Samples pixels with a fixed share per stratum.

  Args:
    key: PRNG key.
    strata: [H, W] int stratum id per pixel in [0, num_strata); -1 for pixels
      never sampled. Ids outside that range are never sampled either.
    num_points: N, static.
    num_strata: S, static.
    fractions: [S] share of the points per stratum, non-negative, summing to 1
      (default equal). An empty stratum's share goes to the others.

  Returns:
    PixelSample with coords [N, 2] int32 (row, col), grouped by stratum, and
    mask [N] bool (all false only when no pixel has a valid stratum).
  """
  _check_map(strata, "strata", "int")
  num_points = _check_num(num_points, "num_points")
  num_strata = _check_num(num_strata, "num_strata")
  if fractions is None:
    fractions = jnp.full((num_strata,), 1.0 / num_strata, jnp.float32)
  else:
    fractions = _check_fractions(fractions, num_strata)

  width = strata.shape[1]
  flat = strata.reshape(-1).astype(jnp.int32)
  flat = jnp.where((flat >= 0) & (flat < num_strata), flat, num_strata)  # Sentinel last.
  key_perm, key_fill = jax.random.split(key)
  priority = jax.random.bits(key_perm, flat.shape, jnp.uint32)
  # Grouped by stratum, a uniformly random order within each group.
  _, _, order = jax.lax.sort(
    (flat, priority, jnp.arange(flat.shape[0], dtype=jnp.int32)), num_keys=2
  )

  counts = jnp.bincount(flat, length=num_strata + 1)[:num_strata]
  starts = jnp.cumsum(counts) - counts
  quotas = _quotas(counts > 0, fractions, num_points)
  quota_ends = jnp.cumsum(quotas)

  slot = jnp.arange(num_points, dtype=jnp.int32)
  stratum = jnp.minimum(jnp.searchsorted(quota_ends, slot, side="right"), num_strata - 1)
  local = slot - (quota_ends[stratum] - quotas[stratum])
  count = counts[stratum]
  refill = jax.random.randint(key_fill, (num_points,), 0, jnp.maximum(count, 1))
  local = jnp.where(local < count, local, refill)
  index = order[jnp.clip(starts[stratum] + local, 0, flat.shape[0] - 1)]

  mask = jnp.broadcast_to(counts.sum() > 0, (num_points,))
  index = jnp.where(mask, index, 0)
  coords = jnp.stack([index // width, index % width], axis=-1).astype(jnp.int32)
  return PixelSample(coords, mask)


def uniform(key, valid, num_points: int) -> PixelSample:
  """Samples pixels uniformly among the valid ones.

  Args:
    key: PRNG key.
    valid: [H, W] bool, pixels that may be sampled.
    num_points: N, static.

  Returns:
    PixelSample: coords [N, 2] int32 (row, col) in random order; mask [N] bool,
    all false only when no pixel is valid.
  """
  _check_map(valid, "valid", "bool")
  return stratified(key, jnp.where(valid, 0, -1).astype(jnp.int32), num_points, 1)


def hard_pixels(
  key, scores, num_points: int, oversample: int = 3, importance: float = 0.75, valid=None
) -> PixelSample:
  """Uncertainty-driven sampling: the hardest of a random oversample, plus a random rest.

  Draws ``oversample * num_points`` distinct candidates uniformly (among valid
  pixels), keeps the ``round(importance * num_points)`` with the highest score and
  fills the rest with other candidates chosen uniformly.

  Args:
    key: PRNG key.
    scores: [H, W] float, higher = harder (e.g. loss or prediction entropy);
      no gradient flows through it.
    num_points: N, static.
    oversample: static int >= 1, candidates per kept point.
    importance: static float in [0, 1], fraction of points chosen by score.
    valid: optional [H, W] bool; invalid pixels are never returned.

  Returns:
    PixelSample: coords [N, 2] int32, the scored picks first; mask [N] bool.
  """
  _check_map(scores, "scores", "number")
  num_points = _check_num(num_points, "num_points")
  oversample = _check_num(oversample, "oversample")
  if not 0.0 <= float(importance) <= 1.0:
    raise ValueError(f"`importance` must be in [0, 1], got {importance!r}.")
  if valid is None:
    valid = jnp.ones(scores.shape, jnp.bool_)
  elif valid.shape != scores.shape:
    raise ValueError(
      f"`valid` shape {tuple(valid.shape)} must equal `scores` shape {tuple(scores.shape)}."
    )
  candidates = uniform(key, valid, oversample * num_points)
  cand_scores = jax.lax.stop_gradient(scores)[candidates.coords[:, 0], candidates.coords[:, 1]]
  chosen = hardest(cand_scores, candidates.mask, num_points, importance)
  return PixelSample(candidates.coords[chosen], candidates.mask[chosen])


def hardest(scores, mask, num_points: int, importance: float = 0.75):
  """Which of M candidates to keep: the highest-scored, then the others in their order.

  The selection behind hard-pixel sampling, on candidates already drawn (in random
  order), so that a train step can score its candidates with the model it is
  training (``config.task.sampling='hard'``) and keep only the hard ones.

  Args:
    scores: [M] float, higher = harder; no gradient flows through it.
    mask: [M] bool, valid candidates; invalid ones come last, never before a valid one.
    num_points: N <= M, static.
    importance: static float in [0, 1]: ``round(importance * N)`` picks by score, the
      rest are the first other candidates in the given (random) order.

  Returns:
    [N] int32 indices into the candidates, the scored picks first.
  """
  num_points = _check_num(num_points, "num_points")
  if scores.ndim != 1 or mask.shape != scores.shape:
    raise ValueError(
      f"`scores` and `mask` must both be [M], got {tuple(scores.shape)} and {tuple(mask.shape)}."
    )
  if num_points > scores.shape[0]:
    raise ValueError(f"num_points={num_points} is more than the {scores.shape[0]} candidates.")
  if not 0.0 <= float(importance) <= 1.0:
    raise ValueError(f"`importance` must be in [0, 1], got {importance!r}.")
  num_hard = int(round(float(importance) * num_points))
  mask = mask.astype(jnp.bool_)
  ranked = jnp.where(mask, jax.lax.stop_gradient(scores).astype(jnp.float32), -jnp.inf)
  hard = jnp.argsort(-ranked, stable=True)[:num_hard]
  # The rest: valid non-picked candidates in candidate order, then the invalid ones.
  order = jnp.zeros(scores.shape, jnp.int32).at[hard].set(2)
  order = jnp.where(mask, order, jnp.maximum(order, 1))
  rest = jnp.argsort(order, stable=True)[: num_points - num_hard]
  return jnp.concatenate([hard, rest]).astype(jnp.int32)


# ----------------------------------------------------------------------------
# Strata from task labels.


def class_strata(labels, ignore_label: int = 255):
  """Class-stratified sampling: stratum = class id; ignored pixels -> -1.

  Args:
    labels: [H, W] int class ids, ``ignore_label`` for unlabelled pixels.

  Returns:
    [H, W] int32 strata for ``stratified(..., num_strata=num_classes)``.
  """
  _check_map(labels, "labels", "int")
  return jnp.where(labels == ignore_label, -1, labels).astype(jnp.int32)


def boundary_strata(edges, threshold: float = 0.5, valid=None):
  """Edge / non-edge strata from a boundary map.

  Args:
    edges: [H, W] float boundary strength or annotator fraction in [0, 1].
    threshold: a pixel with ``edges >= threshold`` is an edge.
    valid: optional [H, W] bool; invalid pixels -> -1.

  Returns:
    [H, W] int32: 0 non-edge, 1 edge, -1 never sampled. Pair with
    ``positive_fractions(p)`` to get a fraction p of edge pixels.
  """
  _check_map(edges, "edges", "number")
  strata = (edges >= threshold).astype(jnp.int32)
  if valid is not None:
    strata = jnp.where(valid, strata, -1)
  return strata


def positive_fractions(positive_fraction: float):
  """Fractions (non-edge, edge) for ``boundary_strata``: [2] float32."""
  p = float(positive_fraction)
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"`positive_fraction` must be in [0, 1], got {positive_fraction!r}.")
  return jnp.asarray([1.0 - p, p], jnp.float32)


def grid_strata(valid, cells: int, key=None):
  """Spatial strata: the cell of a ``cells x cells`` grid holding each pixel.

  With a key the grid is jittered: its lines shift by a random offset of up to
  one cell (wrapping around), so cell borders differ between draws.

  Args:
    valid: [H, W] bool; invalid pixels -> -1.
    cells: static int, cells per side (num_strata = cells ** 2).
    key: optional PRNG key for the jitter.

  Returns:
    [H, W] int32 cell ids in [0, cells**2).
  """
  _check_map(valid, "valid", "bool")
  cells = _check_num(cells, "cells")
  height, width = valid.shape
  rows = jnp.arange(height, dtype=jnp.float32)
  cols = jnp.arange(width, dtype=jnp.float32)
  if key is not None:
    offset = jax.random.uniform(key, (2,))
    rows = rows + offset[0] * height / cells
    cols = cols + offset[1] * width / cells
  row_cell = jnp.floor(rows * cells / height).astype(jnp.int32) % cells
  col_cell = jnp.floor(cols * cells / width).astype(jnp.int32) % cells
  cell = row_cell[:, None] * cells + col_cell[None, :]
  return jnp.where(valid, cell, -1).astype(jnp.int32)


def sample_points(sample: PixelSample):
  """Float (row, col) points of a sample, for ``hypercolumn``: [N, 2] float32."""
  return sample.coords.astype(jnp.float32)


__all__ = [
  "PixelSample",
  "uniform",
  "stratified",
  "hard_pixels",
  "hardest",
  "class_strata",
  "boundary_strata",
  "positive_fractions",
  "grid_strata",
  "sample_points",
]
