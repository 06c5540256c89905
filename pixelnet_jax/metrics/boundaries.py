"""BSDS500 boundary benchmark: edge NMS, thinning, pixel matching, ODS/OIS/AP.

A port of the official Berkeley `boundaryBench` (`correspondPixels`,
`evaluation_bdry_image.m`, `collect_eval_bdry.m`) and of the structured-edge
toolbox NMS (`edgesNmsMex`), so that numbers compare with published tables.
The matching and thinning loops are numba kernels (`kernels.py`).

Matchers. The official match.cc does not solve the problem on the full graph:
an unmatched pixel may only pair with `OUTLIER_DEGREE` = 6 outlier nodes
drawn at random (`kofn.cc`, erand48), and CSA solves that sparse graph. So it
sometimes loses a few matches, and which of several equally good matchings it
returns (hence precision, the union over annotators) is random. Its
generator `Random::rand` is a static object built with `reseed(0)`, which
seeds from `gettimeofday` when the MEX file loads (BSDS `Random.cc`); nothing
reseeds it. The official outputs therefore cannot be reproduced exactly.
  * `matcher='optimal'` (default): exact optimum on the full graph;
    deterministic and fastest.
  * `matcher='official'`: match.cc's graph, draws and node order, with one
    erand48 stream per image (seeded from `seed`) running through the
    thresholds and annotators in `evaluation_bdry_image.m`'s order, solved
    exactly (CSA's choice among equal optima is not emulated). It is as
    random as the original: over seeds 0-39, the official counts of the
    benchmark's test images at t = 1/6 fall inside its spread (image 1:
    matched annotator pixels 9245-9251 vs official 9248, matched machine
    pixels 2489-2492 vs 2492), bar one count 1 pixel below it (image 4,
    8133 vs 8134-8139). Slower than 'optimal' (benchmarks/boundaries_speed.py
    measures both).
On the benchmark's test data (5 thresholds) both agree with the official
tables within 8e-4 on the dataset-level numbers; per image, 'optimal' is off
by 1.07e-3 at most (3 of 2808 machine pixels of image 1) and 'official' by
0.65e-3 to 1.42e-3 depending on the seed: a gap of this size is the official
matcher's own run-to-run noise, not a difference of method.

Maps are `[H, W]` arrays indexed (row, col). Probabilities are float in [0, 1];
boundary maps are bool (or 0/1).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from pixelnet_jax.metrics import kernels

# Defaults of the official benchmark.
MAX_DIST = 0.0075  # Fraction of the image diagonal.
OUTLIER_COST = 100.0  # Multiple of the pixel max distance.
# match.cc rounds distances to integers with this multiplier (CSA needs them).
_COST_MULTIPLIER = 100
# match.cc: random outlier edges per node.
OUTLIER_DEGREE = 6
# 'official': match.cc's random sparse graph; 'optimal': the full graph.
MATCHERS = ("official", "optimal")


# ----------------------------------------------------------------------------
# Edge non-maximum suppression (structured-edge toolbox).


def conv_tri(image: np.ndarray, radius: int) -> np.ndarray:
  """Triangle filter of `radius` with symmetric padding, like Dollar's convTri.

  Args:
    image: [H, W] float.
    radius: integer >= 1 (the toolbox's r > 1 branch; r = 1 is also a triangle).
  Returns:
    [H, W] float64.
  """
  if radius < 1 or int(radius) != radius:
    raise ValueError(f"radius must be an integer >= 1, got {radius}.")
  r = int(radius)
  f = np.concatenate([np.arange(1, r + 2), np.arange(r, 0, -1)]) / (r + 1) ** 2
  out = ndimage.convolve1d(np.asarray(image, np.float64), f, axis=0, mode="reflect")
  return ndimage.convolve1d(out, f, axis=1, mode="reflect")


def edge_orientation(edges: np.ndarray, smooth_radius: int = 4) -> np.ndarray:
  """Edge normal orientation in [0, pi) from second derivatives.

  As the toolbox: `[Ox,Oy] = gradient2(convTri(E,4))`, `[Oxx,~] = gradient2(Ox)`,
  `[Oxy,Oyy] = gradient2(Oy)`, `O = mod(atan(Oyy.*sign(-Oxy)./(Oxx+1e-5)), pi)`.

  Args:
    edges: [H, W] float edge strength.
  Returns:
    [H, W] float64 angle; cos is along columns (x), sin along rows (y).
  """
  e = conv_tri(edges, smooth_radius)
  oy, ox = np.gradient(e)
  oxx = np.gradient(ox, axis=1)
  oyy, oxy = np.gradient(oy)
  # np.gradient returns (d/drow, d/dcol); MATLAB gradient returns (d/dx, d/dy).
  return np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5)), np.pi)


def _interp_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray):
  """Bilinear read with the toolbox's clamping (x in [0, w - 1.001])."""
  h, w = image.shape
  x = np.clip(x, 0, w - 1.001)
  y = np.clip(y, 0, h - 1.001)
  x0 = x.astype(np.int64)
  y0 = y.astype(np.int64)
  dx0 = x - x0
  dy0 = y - y0
  dx1 = 1 - dx0
  dy1 = 1 - dy0
  return (
    image[y0, x0] * dx1 * dy1
    + image[y0, x0 + 1] * dx0 * dy1
    + image[y0 + 1, x0] * dx1 * dy0
    + image[y0 + 1, x0 + 1] * dx0 * dy0
  )


def edge_nms(
  edges: np.ndarray,
  orientation: np.ndarray | None = None,
  radius: int = 1,
  border: int = 5,
  multiplier: float = 1.01,
) -> np.ndarray:
  """Non-maximum suppression across edges, as `edgesNmsMex(E,O,r,s,m)`.

  A pixel survives when `multiplier * E` is at least the bilinearly read
  strength at distances 1..radius on both sides along the normal; then
  strengths within `border` pixels of the image border are ramped down
  linearly (factor x / border at distance x), as the toolbox does.

  Args:
    edges: [H, W] float edge strength.
    orientation: [H, W] normal angle; default `edge_orientation(edges)`.
  Returns:
    [H, W] float32 suppressed map.
  """
  e0 = np.asarray(edges, np.float32)
  if e0.ndim != 2:
    raise ValueError(f"edges must be [H, W], got shape {e0.shape}.")
  if orientation is None:
    orientation = edge_orientation(e0)
  orientation = np.asarray(orientation, np.float32)
  h, w = e0.shape
  out = e0.copy()
  ys, xs = np.nonzero(e0)
  if ys.size:
    e = e0[ys, xs] * np.float32(multiplier)
    cos_o = np.cos(orientation[ys, xs])
    sin_o = np.sin(orientation[ys, xs])
    keep = np.ones(ys.shape, bool)
    for d in range(-radius, radius + 1):
      if d == 0:
        continue
      x = (xs + np.float32(d) * cos_o).astype(np.float32)
      y = (ys + np.float32(d) * sin_o).astype(np.float32)
      keep &= ~(e < _interp_bilinear(e0, x, y))
    out[ys[~keep], xs[~keep]] = 0
  s = min(border, w // 2, h // 2)
  if s > 0:
    ramp = np.arange(s, dtype=np.float32) / np.float32(s)
    out[:, :s] *= ramp[None, :]
    out[:, w - s :] *= ramp[None, ::-1]
    out[:s, :] *= ramp[:, None]
    out[h - s :, :] *= ramp[::-1, None]
  return out


# ----------------------------------------------------------------------------
# Thinning: MATLAB bwmorph(bw, 'thin', inf) (Lam, Lee & Suen 1992).


def _thin_luts() -> tuple[np.ndarray, np.ndarray]:
  """Deletion tables of the two subiterations, indexed by the 8-neighbour code.

  Bit k of the code is neighbour x_{k+1} of the paper: east, north-east,
  north, north-west, west, south-west, south, south-east.
  """
  codes = np.arange(256)
  x = [(codes >> k) & 1 for k in range(8)]
  # G1: exactly one 4-connected "0 -> 1" transition.
  crossings = sum((1 - x[i]) & (x[i + 1] | x[(i + 2) % 8]) for i in (0, 2, 4, 6))
  g1 = crossings == 1
  # G2: 2 <= min(n1, n2) <= 3.
  n1 = sum(x[k - 1] | x[k] for k in (1, 3, 5, 7))
  n2 = sum(x[k] | x[(k + 1) % 8] for k in (1, 3, 5, 7))
  g2 = (np.minimum(n1, n2) >= 2) & (np.minimum(n1, n2) <= 3)
  # G3 / G3': (x2 | x3 | ~x8) & x1 == 0, and its 180-degree rotation.
  g3 = ((x[1] | x[2] | (1 - x[7])) & x[0]) == 0
  g3p = ((x[5] | x[6] | (1 - x[3])) & x[4]) == 0
  return g1 & g2 & g3, g1 & g2 & g3p


_THIN_LUT1, _THIN_LUT2 = _thin_luts()


def thin(bmap: np.ndarray) -> np.ndarray:
  """Thins a binary map to 1-pixel-wide curves until stable.

  Same result as MATLAB `bwmorph(bmap, 'thin', inf)` (pixels outside the
  image count as 0).

  Args:
    bmap: [H, W] bool.
  Returns:
    [H, W] bool.
  """
  skel = np.asarray(bmap, bool)
  if skel.ndim != 2:
    raise ValueError(f"bmap must be [H, W], got shape {skel.shape}.")
  ys, xs = np.nonzero(skel)
  out = np.zeros(skel.shape, bool)
  if ys.size == 0:
    return out
  # Work on the bounding box (plus a zero margin) only.
  y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
  work = np.zeros((y1 - y0 + 2, x1 - x0 + 2), np.uint8)
  work[1:-1, 1:-1] = skel[y0:y1, x0:x1]
  kernels.thin_inplace(work, _THIN_LUT1, _THIN_LUT2)
  out[y0:y1, x0:x1] = work[1:-1, 1:-1].astype(bool)
  return out


# ----------------------------------------------------------------------------
# Pixel correspondence (correspondPixels / match.cc).


def _offsets(max_dist_px: float, column_outer: bool = False):
  """Window offsets within max_dist_px and their integer costs (match.cc).

  `column_outer` lists them as match.cc adds edges (column offset outer).
  """
  r = int(math.ceil(max_dist_px))
  dv, du = np.mgrid[-r : r + 1, -r : r + 1]
  if column_outer:
    dv, du = dv.T, du.T
  d2 = (du * du + dv * dv).ravel()
  keep = d2 <= max_dist_px * max_dist_px
  cost = np.rint(np.sqrt(d2[keep]) * _COST_MULTIPLIER).astype(np.int64)
  return r, dv.ravel()[keep], du.ravel()[keep], cost


def _check_matcher(matcher: str) -> None:
  if matcher not in MATCHERS:
    raise ValueError(f"matcher must be one of {MATCHERS}, got {matcher!r}.")


def _pixels(bmap: np.ndarray, matcher: str):
  """(ys, xs) of a map's pixels; column-major for 'official' (match.cc ids)."""
  if matcher == "official":
    xs, ys = np.nonzero(bmap.T)
    return ys, xs
  return np.nonzero(bmap)


def _rand48_state(seed: int) -> np.ndarray:
  """uint64 [1] erand48 state from a seed (low 48 bits, as Random::_init)."""
  return np.array([int(seed) & ((1 << 48) - 1)], np.uint64)


def correspond_pixels(
  bmap1: np.ndarray,
  bmap2: np.ndarray,
  max_dist: float = MAX_DIST,
  outlier_cost: float = OUTLIER_COST,
  matcher: str = "optimal",
  seed: int = 0,
):
  """Minimum-cost correspondence between two boundary maps.

  Pixels closer than `max_dist * diagonal` may match one-to-one; a pixel left
  unmatched costs `outlier_cost * max_dist * diagonal`. As in the official
  match.cc, distances are rounded to integers (x100), so the optimum is in
  effect a maximum-cardinality matching of minimum total distance.

  Args:
    bmap1: [H, W] bool, e.g. the machine boundaries.
    bmap2: [H, W] bool, e.g. one annotator's boundaries.
    matcher: 'optimal' (full graph) or 'official' (match.cc's random sparse
      outlier graph drawn from erand48 seeded with `seed`; see the module
      docstring).
  Returns:
    (matched1 [H, W] bool, matched2 [H, W] bool): pixels of each map that
    found a partner.
  """
  bmap1 = np.asarray(bmap1, bool)
  bmap2 = np.asarray(bmap2, bool)
  if bmap1.shape != bmap2.shape or bmap1.ndim != 2:
    raise ValueError(
      f"boundary maps must be [H, W] of equal shape, got {bmap1.shape} and {bmap2.shape}."
    )
  _check_matcher(matcher)
  h, w = bmap1.shape
  max_dist_px = max_dist * math.hypot(h, w)
  ys1, xs1 = _pixels(bmap1, matcher)
  ys2, xs2 = _pixels(bmap2, matcher)
  m1, m2 = match_pixels(
    ys1,
    xs1,
    ys2,
    xs2,
    (h, w),
    max_dist_px,
    outlier_cost * max_dist_px,
    state=(_rand48_state(seed) if matcher == "official" else None),
  )
  matched1 = np.zeros((h, w), bool)
  matched2 = np.zeros((h, w), bool)
  matched1[ys1[m1], xs1[m1]] = True
  matched2[ys2[m2], xs2[m2]] = True
  return matched1, matched2


def _id_grid(ys, xs, shape, r):
  """Padded [H + 2r, W + 2r] int64 grid of pixel ids (-1 where no pixel)."""
  h, w = shape
  grid = np.full((h + 2 * r, w + 2 * r), -1, np.int64)
  grid[ys + r, xs + r] = np.arange(ys.size)
  return grid


def _near_mask(grid, r, dv, du):
  """[H, W] bool: within the window offsets (dv, du) of a pixel of `grid`."""
  present = grid >= 0
  h, w = present.shape[0] - 2 * r, present.shape[1] - 2 * r
  near = np.zeros((h, w), bool)
  for a, b in zip(dv, du):
    near |= present[r + a : r + a + h, r + b : r + b + w]
  return near


def match_pixels(
  ys1, xs1, ys2, xs2, shape, max_dist_px, outlier_cost_px, solver="numba", targets=None, state=None
):
  """Matching on pixel lists; returns bool [n1], [n2] 'has a partner'.

  `solver='scipy'` is a slower, independent reference used by the tests.
  `targets` (from `_match_targets`) may be passed to reuse map 2's grids.
  `state` (uint64 [1] erand48 state, advanced in place) selects the official
  random sparse graph; both pixel lists must then be in column-major order.
  """
  n1_all, n2_all = ys1.size, ys2.size
  if n1_all == 0 or n2_all == 0:
    return np.zeros(n1_all, bool), np.zeros(n2_all, bool)
  ow = int(math.ceil(outlier_cost_px * _COST_MULTIPLIER))
  if targets is None:
    targets = _match_targets(ys2, xs2, shape, max_dist_px)
  grid2, near2 = targets
  if state is not None:
    r, dv, du, cost = _offsets(max_dist_px, column_outer=True)
    return kernels.official_match_points(
      np.ascontiguousarray(ys1, np.int64),
      np.ascontiguousarray(xs1, np.int64),
      grid2,
      near2,
      n2_all,
      r,
      dv.astype(np.int64),
      du.astype(np.int64),
      cost,
      ow,
      OUTLIER_DEGREE,
      state,
    )
  r, dv, du, cost = _offsets(max_dist_px)
  if solver == "numba":
    return kernels.match_points(
      np.ascontiguousarray(ys1, np.int64),
      np.ascontiguousarray(xs1, np.int64),
      grid2,
      near2,
      n2_all,
      r,
      dv.astype(np.int64),
      du.astype(np.int64),
      cost,
      ow,
    )
  if solver != "scipy":
    raise ValueError(f"unknown solver {solver!r}; use numba or scipy.")
  matched1 = np.zeros(n1_all, bool)
  matched2 = np.zeros(n2_all, bool)
  cand = grid2[(ys1 + r)[:, None] + dv[None, :], (xs1 + r)[:, None] + du[None, :]]
  ii, kk = np.nonzero(cand >= 0)
  if ii.size == 0:
    return matched1, matched2
  jj = cand[ii, kk]
  nodes1, ei = np.unique(ii, return_inverse=True)
  nodes2, ej = np.unique(jj, return_inverse=True)
  n1, n2 = nodes1.size, nodes2.size
  col4row = _solve_scipy(ei, ej, cost[kk], n1, n2, ow)
  rows1 = np.nonzero(col4row < n2)[0]
  matched1[nodes1[rows1]] = True
  matched2[nodes2[col4row[rows1]]] = True
  return matched1, matched2


def _match_targets(ys2, xs2, shape, max_dist_px):
  """Map 2's id grid and near mask, computed once per annotator."""
  r, dv, du, _ = _offsets(max_dist_px)
  grid2 = _id_grid(ys2, xs2, shape, r)
  return grid2, _near_mask(grid2, r, dv, du)


def _solve_scipy(ei, ej, ww, n1, n2, ow):
  """Reference solver: scipy LAPJVsp on the square outlier-augmented graph.

  Rows = map-1 nodes, then one outlier per map-2 node; columns = map-2 nodes,
  then one outlier per map-1 node. Real edge (i, j) at its distance; i and j
  to their own outliers, and the two outliers of every real edge to each
  other, at the outlier cost (as match.cc counts). Weights are shifted by 1
  so that no weight is 0 (a missing edge for scipy).
  """
  n = n1 + n2
  a1 = np.arange(n1)
  a2 = np.arange(n2)
  rows = np.concatenate([ei, a1, n1 + a2, n1 + ej])
  cols = np.concatenate([ej, n2 + a1, a2, n2 + ei])
  vals = np.concatenate([ww + 1, np.full(n1 + n2 + ei.size, ow + 1)])
  graph = sparse.csr_matrix((vals.astype(np.float64), (rows, cols)), shape=(n, n))
  _, col_ind = csgraph.min_weight_full_bipartite_matching(graph)
  return col_ind[:n1]


# ----------------------------------------------------------------------------
# Per-image counts (evaluation_bdry_image.m).


def thresholds(num_thresholds: int) -> np.ndarray:
  """`linspace(1/(n+1), 1 - 1/(n+1), n)` as the benchmark. Returns [n] float64."""
  if num_thresholds < 1:
    raise ValueError(f"num_thresholds must be >= 1, got {num_thresholds}.")
  n = int(num_thresholds)
  return np.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n)


def evaluate_image(
  prob: np.ndarray,
  boundaries: Sequence[np.ndarray],
  thresh: np.ndarray,
  nms: bool = False,
  max_dist: float = MAX_DIST,
  matcher: str = "optimal",
  seed: int = 0,
) -> np.ndarray:
  """Match counts of one image at every threshold.

  Thresholds `prob >= t`, thins, and matches against each annotator in turn:
  recall counts annotator pixels matched (summed over annotators), precision
  counts machine pixels matched to any annotator.

  Args:
    prob: [H, W] float edge probability in [0, 1].
    boundaries: annotators' [H, W] bool boundary maps.
    thresh: [T] thresholds.
    nms: apply `edge_nms` to `prob` first (structured-edge protocol).
    matcher: 'official' or 'optimal' (see the module docstring).
    seed: erand48 seed of the official matcher; one stream runs through the
      thresholds and annotators in the benchmark's call order.
  Returns:
    [T, 4] int64 columns (cntR, sumR, cntP, sumP), as the `_ev1.txt` files.
  """
  _check_matcher(matcher)
  prob = np.asarray(prob, np.float64)
  gts = [np.asarray(g, bool) for g in boundaries]
  for g in gts:
    if g.shape != prob.shape:
      raise ValueError(
        f"boundary map shape {g.shape} differs from the prediction shape {prob.shape}."
      )
  if nms:
    prob = edge_nms(prob).astype(np.float64)
  h, w = prob.shape
  max_dist_px = max_dist * math.hypot(h, w)
  outlier_px = OUTLIER_COST * max_dist_px
  gt_pixels = [_pixels(g, matcher) for g in gts]
  targets = [_match_targets(ys2, xs2, (h, w), max_dist_px) for ys2, xs2 in gt_pixels]
  state = _rand48_state(seed) if matcher == "official" else None
  sum_r = sum(int(g.sum()) for g in gts)
  counts = np.zeros((len(thresh), 4), np.int64)
  for t, th in enumerate(thresh):
    bmap = thin(prob >= th)
    ys1, xs1 = _pixels(bmap, matcher)
    matched_any = np.zeros(ys1.size, bool)
    cnt_r = 0
    for (ys2, xs2), target in zip(gt_pixels, targets):
      m1, m2 = match_pixels(
        ys1, xs1, ys2, xs2, (h, w), max_dist_px, outlier_px, targets=target, state=state
      )
      matched_any |= m1
      cnt_r += int(m2.sum())
    counts[t] = (cnt_r, sum_r, int(matched_any.sum()), ys1.size)
  return counts


# ----------------------------------------------------------------------------
# Dataset scores (collect_eval_bdry.m).


def f_measure(recall, precision):
  """Harmonic mean, 0 where both are 0 (as the benchmark)."""
  r = np.asarray(recall, np.float64)
  p = np.asarray(precision, np.float64)
  s = p + r
  return 2 * p * r / (s + (s == 0))


def _ratio(cnt, total):
  cnt = np.asarray(cnt, np.float64)
  total = np.asarray(total, np.float64)
  return cnt / (total + (total == 0))


def max_f(thresh: np.ndarray, recall: np.ndarray, precision: np.ndarray):
  """Best F along the PR curve, interpolating 100 steps between thresholds.

  Returns (threshold, recall, precision, f) of the official `maxF`: the first
  maximum along the scan (strictly greater wins).
  """
  best = (thresh[0], recall[0], precision[0], float(f_measure(recall[0], precision[0])))
  d = np.linspace(0.0, 1.0, 100)
  for i in range(1, len(thresh)):
    t = thresh[i] * d + thresh[i - 1] * (1 - d)
    r = recall[i] * d + recall[i - 1] * (1 - d)
    p = precision[i] * d + precision[i - 1] * (1 - d)
    f = f_measure(r, p)
    k = int(np.argmax(f))
    if f[k] > best[3]:
      best = (t[k], r[k], p[k], float(f[k]))
  return tuple(float(v) for v in best)


def area_pr(recall: np.ndarray, precision: np.ndarray) -> float:
  """Area under the PR curve as the benchmark's `Area_PR`.

  Unique recalls (first occurrence, as MATLAB's `unique`), precision
  interpolated linearly at recall 0:0.01:1, 0 outside the measured range.
  """
  ru, ind = np.unique(np.asarray(recall, np.float64), return_index=True)
  if ru.size <= 1:
    return 0.0
  pu = np.asarray(precision, np.float64)[ind]
  ri = np.linspace(0.0, 1.0, 101)
  p = np.interp(ri, ru, pu, left=np.nan, right=np.nan)
  return float(np.nan_to_num(p, nan=0.0).sum() * 0.01)


@dataclasses.dataclass(frozen=True)
class BoundaryScores:
  """Benchmark results; arrays are per threshold [T] or per image [N]."""

  ods_threshold: float
  ods_recall: float
  ods_precision: float
  ods_f: float
  ois_recall: float
  ois_precision: float
  ois_f: float
  ap: float
  thresholds: np.ndarray  # [T]
  recall: np.ndarray  # [T] over the dataset
  precision: np.ndarray  # [T]
  f: np.ndarray  # [T]
  image_ids: tuple  # [N], in scoring order
  image_best: np.ndarray  # [N, 4] (threshold, recall, precision, f)
  counts: np.ndarray  # [N, T, 4] (cntR, sumR, cntP, sumP)

  def summary(self) -> dict:
    """JSON-friendly top-level numbers."""
    return {
      k: float(getattr(self, k))
      for k in (
        "ods_threshold",
        "ods_recall",
        "ods_precision",
        "ods_f",
        "ois_recall",
        "ois_precision",
        "ois_f",
        "ap",
      )
    }


def collect(
  thresh: np.ndarray, counts: np.ndarray, image_ids: Sequence[str] | None = None
) -> BoundaryScores:
  """ODS, OIS and AP from per-image counts, as `collect_eval_bdry.m`.

  Args:
    thresh: [T] thresholds.
    counts: [N, T, 4] int (cntR, sumR, cntP, sumP) per image.
  """
  counts = np.asarray(counts, np.int64)
  if counts.ndim != 3 or counts.shape[1:] != (len(thresh), 4):
    raise ValueError(f"counts must be [N, {len(thresh)}, 4], got {counts.shape}.")
  n = counts.shape[0]
  if n == 0:
    raise ValueError("no images to score.")
  image_best = np.zeros((n, 4))
  ois = np.zeros(4, np.int64)
  for i, c in enumerate(counts):
    r = _ratio(c[:, 0], c[:, 1])
    p = _ratio(c[:, 2], c[:, 3])
    image_best[i] = max_f(thresh, r, p)
    ois += c[int(np.argmax(f_measure(r, p)))]
  total = counts.sum(axis=0)
  recall = _ratio(total[:, 0], total[:, 1])
  precision = _ratio(total[:, 2], total[:, 3])
  ods = max_f(thresh, recall, precision)
  ois_r = float(_ratio(ois[0], ois[1]))
  ois_p = float(_ratio(ois[2], ois[3]))
  ids = tuple(image_ids) if image_ids is not None else tuple(str(i + 1) for i in range(n))
  return BoundaryScores(
    ods_threshold=ods[0],
    ods_recall=ods[1],
    ods_precision=ods[2],
    ods_f=ods[3],
    ois_recall=ois_r,
    ois_precision=ois_p,
    ois_f=float(f_measure(ois_r, ois_p)),
    ap=area_pr(recall, precision),
    thresholds=np.asarray(thresh, np.float64),
    recall=recall,
    precision=precision,
    f=f_measure(recall, precision),
    image_ids=ids,
    image_best=image_best,
    counts=counts,
  )


def _evaluate_one(args):
  prob, boundaries, thresh, nms, max_dist, matcher, seed = args
  return evaluate_image(
    prob, boundaries, thresh, nms=nms, max_dist=max_dist, matcher=matcher, seed=seed
  )


def _image_seed(seed: int, index: int) -> int:
  """Seed of the index-th image's stream (independent of the worker count)."""
  return (int(seed) * 1000003 + index) & ((1 << 48) - 1)


def evaluate_boundaries(
  predictions: Mapping[str, np.ndarray],
  ground_truth: Mapping[str, Sequence[np.ndarray]],
  num_thresholds: int = 99,
  nms: bool = False,
  workers: int = 1,
  max_dist: float = MAX_DIST,
  matcher: str = "optimal",
  seed: int = 0,
  intersection: bool = False,
) -> BoundaryScores:
  """Scores edge probability maps against BSDS-style ground truth.

  Args:
    predictions: image id -> [H, W] float probability in [0, 1].
    ground_truth: image id -> list of annotators' [H, W] bool boundaries.
    num_thresholds: thresholds `linspace(1/(n+1), 1-1/(n+1), n)`.
    nms: apply the structured-edge NMS before thresholding and thinning.
    workers: processes scoring images in parallel (1 = in this process).
      They are spawned, so a calling script needs the usual
      `if __name__ == '__main__':` guard.
    matcher: 'optimal' (full graph) or 'official' (match.cc's random sparse
      graph); see the module docstring.
    seed: erand48 seed of the official matcher; image k (sorted order) uses
      its own stream, so scores do not depend on `workers`.
    intersection: score only the ids present in both mappings (a warning
      lists the others); by default an id in only one of them is a KeyError
      listing both kinds, since it usually means mismatched inputs.
  Returns:
    `BoundaryScores`; images are scored in sorted id order (the benchmark's
    file order).
  """
  no_pred = sorted(set(ground_truth) - set(predictions))
  no_gt = sorted(set(predictions) - set(ground_truth))
  problems = []
  if no_pred:
    problems.append(
      f"no prediction for ground-truth image(s) {no_pred[:20]} ({len(no_pred)} missing)"
    )
  if no_gt:
    problems.append(f"no ground truth for predicted image(s) {no_gt[:20]} ({len(no_gt)} extra)")
  if problems and not intersection:
    raise KeyError(
      "; ".join(problems) + "; predict every ground-truth image and "
      "nothing else, or pass intersection=True."
    )
  if problems:
    warnings.warn(
      "scoring only images with both a prediction and a ground truth: " + "; ".join(problems) + ".",
      stacklevel=2,
    )
  _check_matcher(matcher)
  ids = sorted(set(ground_truth) & set(predictions))
  if not ids:
    raise ValueError("no image has both a prediction and a ground truth.")
  thresh = thresholds(num_thresholds)
  jobs = []
  for image_id in ids:
    prob = np.asarray(predictions[image_id])
    gts = ground_truth[image_id]
    if prob.ndim != 2:
      raise ValueError(f"prediction {image_id!r} must be [H, W], got shape {prob.shape}.")
    if not len(gts):
      raise ValueError(f"ground truth {image_id!r} has no annotator.")
    for g in gts:
      if np.shape(g) != prob.shape:
        raise ValueError(
          f"prediction {image_id!r} has shape {prob.shape} but "
          f"its ground truth has {np.shape(g)}; predict at the "
          f"ground-truth resolution."
        )
    if prob.size and (np.nanmin(prob) < 0 or np.nanmax(prob) > 1 or np.isnan(prob).any()):
      raise ValueError(
        f"prediction {image_id!r} must hold probabilities in [0, 1] (apply the sigmoid first)."
      )
    jobs.append(
      (
        prob,
        [np.asarray(g, bool) for g in gts],
        thresh,
        nms,
        max_dist,
        matcher,
        _image_seed(seed, len(jobs)),
      )
    )
  if workers <= 1 or len(jobs) <= 1:
    counts = [_evaluate_one(j) for j in jobs]
  else:
    # spawn: safe even when the caller has started JAX's threads.
    import multiprocessing  # pylint: disable=g-import-not-at-top

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
      max_workers=min(workers, len(jobs)), mp_context=ctx
    ) as pool:
      counts = list(pool.map(_evaluate_one, jobs, chunksize=1))
  return collect(thresh, np.stack(counts), ids)
