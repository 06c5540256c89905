"""Numba kernels of the boundary benchmark: pixel matching and thinning.

`official_match_points` rebuilds match.cc's random sparse graph with the same
generator (glibc erand48, as BSDS `Random.hh`) and draws (`kofn.cc`).

The BSDS matching is a sparse assignment on integer costs where almost every
row's cheapest column is free; a greedy start plus Dijkstra searches that stop
at the first free column solve it far faster than a general solver. Thinning
only revisits pixels on the shrinking border instead of the whole image.
"""

from __future__ import annotations

import numba
import numpy as np

_INF = np.iinfo(np.int64).max // 4


@numba.njit(cache=True, nogil=True)
def _heap_push(keys, vals, size, key, val):
  i = size
  keys[i] = key
  vals[i] = val
  while i > 0:
    parent = (i - 1) >> 1
    if keys[parent] <= keys[i]:
      break
    keys[parent], keys[i] = keys[i], keys[parent]
    vals[parent], vals[i] = vals[i], vals[parent]
    i = parent
  return size + 1


@numba.njit(cache=True, nogil=True)
def _heap_pop(keys, vals, size):
  key = keys[0]
  val = vals[0]
  size -= 1
  keys[0] = keys[size]
  vals[0] = vals[size]
  i = 0
  while True:
    left = 2 * i + 1
    if left >= size:
      break
    child = left
    if left + 1 < size and keys[left + 1] < keys[left]:
      child = left + 1
    if keys[i] <= keys[child]:
      break
    keys[child], keys[i] = keys[i], keys[child]
    vals[child], vals[i] = vals[i], vals[child]
    i = child
  return key, val, size


@numba.njit(cache=True, nogil=True)
def min_cost_assignment(indptr, indices, costs, num_cols):
  """Assigns every row to a distinct column at minimum total cost.

  Args:
    indptr, indices: CSR structure of the row -> column edges (int64).
    costs: int64 [E] edge costs >= 0. A full row assignment must exist.
    num_cols: number of columns.
  Returns:
    col4row int64 [num_rows]: the column of each row.
  """
  num_rows = indptr.shape[0] - 1
  u = np.zeros(num_rows, np.int64)
  v = np.zeros(num_cols, np.int64)
  col4row = np.full(num_rows, -1, np.int64)
  row4col = np.full(num_cols, -1, np.int64)
  # Greedy start: a row takes its cheapest column when free (u = that cost
  # keeps every reduced cost >= 0 and the matched ones at 0).
  for i in range(num_rows):
    best = -1
    best_cost = _INF
    for e in range(indptr[i], indptr[i + 1]):
      if costs[e] < best_cost:
        best_cost = costs[e]
        best = indices[e]
    if best >= 0 and row4col[best] == -1:
      row4col[best] = i
      col4row[i] = best
      u[i] = best_cost
  dist = np.full(num_cols, _INF, np.int64)
  pred = np.full(num_cols, -1, np.int64)
  scanned = np.zeros(num_cols, np.bool_)
  touched = np.empty(num_cols, np.int64)
  scanned_cols = np.empty(num_cols, np.int64)
  heap_keys = np.empty(max(1, indices.shape[0]) + 1, np.int64)
  heap_vals = np.empty(max(1, indices.shape[0]) + 1, np.int64)
  for s in range(num_rows):
    if col4row[s] != -1:
      continue
    num_touched = 0
    num_scanned = 0
    size = 0
    sink = -1
    dmin = 0
    i = s
    d_i = 0
    while True:
      # Relax the edges of row i, reached at distance d_i.
      for e in range(indptr[i], indptr[i + 1]):
        j = indices[e]
        if scanned[j]:
          continue
        nd = d_i + costs[e] - u[i] - v[j]
        if nd < dist[j]:
          if dist[j] == _INF:
            touched[num_touched] = j
            num_touched += 1
          dist[j] = nd
          pred[j] = i
          # Free columns first among equal distances.
          key = 2 * nd + (1 if row4col[j] != -1 else 0)
          size = _heap_push(heap_keys, heap_vals, size, key, j)
      # Closest unscanned column.
      j = -1
      while size > 0:
        key, cand, size = _heap_pop(heap_keys, heap_vals, size)
        if not scanned[cand] and key >> 1 == dist[cand]:
          j = cand
          break
      if j == -1:
        break  # No augmenting path (cannot happen with outlier columns).
      scanned[j] = True
      scanned_cols[num_scanned] = j
      num_scanned += 1
      if row4col[j] == -1:
        sink = j
        dmin = dist[j]
        break
      i = row4col[j]
      d_i = dist[j]
    if sink >= 0:
      # Dual update keeps reduced costs >= 0 and matched ones at 0.
      u[s] += dmin
      for k in range(num_scanned):
        j = scanned_cols[k]
        if j != sink:
          r = row4col[j]
          u[r] += dmin - dist[j]
          v[j] -= dmin - dist[j]
      # Augment along the predecessor chain.
      j = sink
      while True:
        r = pred[j]
        row4col[j] = r
        nxt = col4row[r]
        col4row[r] = j
        if r == s:
          break
        j = nxt
    for k in range(num_touched):
      j = touched[k]
      dist[j] = _INF
      pred[j] = -1
      scanned[j] = False
  return col4row


def assign(indptr: np.ndarray, indices: np.ndarray, costs: np.ndarray, num_cols: int) -> np.ndarray:
  """Typed front of `min_cost_assignment`. Returns col4row int64 [num_rows]."""
  return min_cost_assignment(
    np.ascontiguousarray(indptr, np.int64),
    np.ascontiguousarray(indices, np.int64),
    np.ascontiguousarray(costs, np.int64),
    int(num_cols),
  )


@numba.njit(cache=True, nogil=True)
def matchable_nodes(ys1, xs1, grid2, near2, n2_all, r, dv, du):
  """Pixels of either map with a partner within the window, and their node ids.

  Returns:
    (deg1 [n1_all], deg2 [n2_all] int64 edge counts; node1, node2 int64 compact
    node id per pixel, -1 when it has no partner; n1, n2 node counts), ids in
    the callers' pixel order.
  """
  n1_all = ys1.shape[0]
  deg1 = np.zeros(n1_all, np.int64)
  deg2 = np.zeros(n2_all, np.int64)
  for a in range(n1_all):
    if not near2[ys1[a], xs1[a]]:
      continue
    y = ys1[a] + r
    x = xs1[a] + r
    for k in range(dv.shape[0]):
      b = grid2[y + dv[k], x + du[k]]
      if b >= 0:
        deg1[a] += 1
        deg2[b] += 1
  node1 = np.full(n1_all, -1, np.int64)
  node2 = np.full(n2_all, -1, np.int64)
  n1 = 0
  for a in range(n1_all):
    if deg1[a] > 0:
      node1[a] = n1
      n1 += 1
  n2 = 0
  for b in range(n2_all):
    if deg2[b] > 0:
      node2[b] = n2
      n2 += 1
  return deg1, deg2, node1, node2, n1, n2


@numba.njit(cache=True, nogil=True)
def match_points(ys1, xs1, grid2, near2, n2_all, r, dv, du, cost, ow):
  """Minimum-cost pixel correspondence with private outliers (see boundaries).

  Args:
    ys1, xs1: int64 [n1] pixels of map 1.
    grid2: int64 [H + 2r, W + 2r] id of each map-2 pixel (offset by r), -1
      elsewhere.
    near2: bool [H, W], true within the max distance of a map-2 pixel (lets
      most pixels of map 1 skip the window scan).
    n2_all: number of map-2 pixels.
    dv, du, cost: int64 [K] window offsets (rows, cols) and integer costs.
    ow: integer cost of leaving a pixel unmatched.
  Returns:
    (matched1 bool [n1], matched2 bool [n2_all]).
  """
  n1_all = ys1.shape[0]
  num_offsets = dv.shape[0]
  matched1 = np.zeros(n1_all, np.bool_)
  matched2 = np.zeros(n2_all, np.bool_)
  deg1, deg2, node1, node2, n1, n2 = matchable_nodes(ys1, xs1, grid2, near2, n2_all, r, dv, du)
  if n1 == 0:
    return matched1, matched2
  pix1 = np.empty(n1, np.int64)
  pix2 = np.empty(n2, np.int64)
  for a in range(n1_all):
    if node1[a] >= 0:
      pix1[node1[a]] = a
  for b in range(n2_all):
    if node2[b] >= 0:
      pix2[node2[b]] = b
  # CSR with rows on the smaller side (fewer rows end unmatched, and those
  # are the long searches), one private outlier column per row last.
  rows_are_1 = n1 <= n2
  num_rows = n1 if rows_are_1 else n2
  num_real_cols = n2 if rows_are_1 else n1
  indptr = np.zeros(num_rows + 1, np.int64)
  if rows_are_1:
    for a in range(n1):
      indptr[a + 1] = indptr[a] + deg1[pix1[a]] + 1
  else:
    for b in range(n2):
      indptr[b + 1] = indptr[b] + deg2[pix2[b]] + 1
  num_edges = indptr[num_rows]
  indices = np.empty(num_edges, np.int64)
  costs = np.empty(num_edges, np.int64)
  fill = indptr[:-1].copy()
  for a in range(n1_all):
    i1 = node1[a]
    if i1 < 0:
      continue
    y = ys1[a] + r
    x = xs1[a] + r
    for k in range(num_offsets):
      b = grid2[y + dv[k], x + du[k]]
      if b >= 0:
        i2 = node2[b]
        if rows_are_1:
          row, col = i1, i2
        else:
          row, col = i2, i1
        indices[fill[row]] = col
        costs[fill[row]] = cost[k]
        fill[row] += 1
  for row in range(num_rows):
    indices[fill[row]] = num_real_cols + row
    costs[fill[row]] = ow
  col4row = min_cost_assignment(indptr, indices, costs, num_real_cols + num_rows)
  for row in range(num_rows):
    col = col4row[row]
    if col < num_real_cols:
      if rows_are_1:
        matched1[pix1[row]] = True
        matched2[pix2[col]] = True
      else:
        matched2[pix2[row]] = True
        matched1[pix1[col]] = True
  return matched1, matched2


# erand48: 48-bit LCG x <- (a x + c) mod 2^48, returning x / 2^48 (glibc).
_RAND48_A = np.uint64(0x5DEECE66D)
_RAND48_C = np.uint64(0xB)
_RAND48_MASK = np.uint64((1 << 48) - 1)


@numba.njit(cache=True, nogil=True)
def _rand48(state):
  """Next erand48 draw in [0, 1); `state` is uint64 [1], updated in place."""
  state[0] = (state[0] * _RAND48_A + _RAND48_C) & _RAND48_MASK
  return state[0] / 281474976710656.0


@numba.njit(cache=True, nogil=True)
def _rand_int(state, a, b):
  """Random::i32(a, b): floor(u * (b - a + 1) + a)."""
  return np.int64(np.floor(_rand48(state) * (b - a + 1.0) + a))


@numba.njit(cache=True, nogil=True)
def _k_of_n_small(state, k, n, out):
  """kofn.cc `_kOfN_smallK`: split k between the halves of [0, n), recurse.

  The recursion runs on an explicit stack (depth-first, left half first, as
  the C++), with the left half's size carried as an offset.
  """
  # Frames (k, n, out position, value offset); <= 2 per level of halving.
  stack = np.empty((130, 4), np.int64)
  stack[0, 0] = k
  stack[0, 1] = n
  stack[0, 2] = 0
  stack[0, 3] = 0
  top = 1
  while top > 0:
    top -= 1
    k, n, pos, base = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
    if k == 1:
      out[pos] = base + _rand_int(state, 0, n - 1)
      continue
    left_n = n // 2
    left_k = 0
    for i in range(k):
      if _rand_int(state, 0, n - i - 1) < left_n - left_k:
        left_k += 1
    right_k = k - left_k
    if right_k > 0:
      stack[top, 0] = right_k
      stack[top, 1] = n - left_n
      stack[top, 2] = pos + left_k
      stack[top, 3] = base + left_n
      top += 1
    if left_k > 0:
      stack[top, 0] = left_k
      stack[top, 1] = left_n
      stack[top, 2] = pos
      stack[top, 3] = base
      top += 1


@numba.njit(cache=True, nogil=True)
def k_of_n(state, k, n, out):
  """kofn.cc `kOfN`: k sorted distinct draws from [0, n) into out[:k]."""
  if k == 0:
    return
  if k * np.log(k) / np.log(2.0) < n / 2:
    _k_of_n_small(state, k, n, out)
    return
  j = 0
  for i in range(n):
    if _rand48(state) < (k - j) / (n - i):
      out[j] = i
      j += 1


@numba.njit(cache=True, nogil=True)
def official_match_points(ys1, xs1, grid2, near2, n2_all, r, dv, du, cost, ow, degree, state):
  """The official match.cc graph (random sparse outliers), solved exactly.

  Nodes are the matchable pixels in the caller's order (column-major, as
  match.cc numbers them). Rows: map-1 nodes, then map-2 outliers; columns:
  map-2 nodes, then map-1 outliers. Edges, in match.cc's order and with its
  random draws: real pairs, `degree` random outlier columns per map-1 node and
  outlier rows per map-2 node (never their own), `degree` random
  outlier-outlier edges per node of the larger side, and the diagonal
  overlay at `ow * 100` that guarantees a perfect assignment.

  Args:
    ys1, xs1: int64 [n1] map-1 pixels, column-major order.
    grid2, near2, n2_all, r: as `match_points` (grid2 ids column-major).
    dv, du, cost: int64 [K] window offsets in match.cc's edge order (column
      offset outer, row offset inner) and their integer costs.
    ow: integer outlier cost; degree: outlier degree (6).
    state: uint64 [1] erand48 state, advanced in place.
  Returns:
    (matched1 bool [n1], matched2 bool [n2_all]).
  """
  n1_all = ys1.shape[0]
  num_offsets = dv.shape[0]
  matched1 = np.zeros(n1_all, np.bool_)
  matched2 = np.zeros(n2_all, np.bool_)
  deg1, deg2, node1, node2, n1, n2 = matchable_nodes(ys1, xs1, grid2, near2, n2_all, r, dv, du)
  num_real = 0
  for a in range(n1_all):
    num_real += deg1[a]
  n = n1 + n2
  if n == 0:
    return matched1, matched2
  nmin = min(n1, n2)
  nmax = max(n1, n2)
  d1 = max(0, min(degree, n1 - 1))
  d2 = max(0, min(degree, n2 - 1))
  d3 = min(degree, nmin)
  m = num_real + d1 * n1 + d2 * n2 + d3 * nmax + n
  rows = np.empty(m, np.int64)
  cols = np.empty(m, np.int64)
  costs = np.empty(m, np.int64)
  pix1 = np.empty(n1, np.int64)
  pix2 = np.empty(n2, np.int64)
  c = 0
  for a in range(n1_all):
    i = node1[a]
    if i < 0:
      continue
    pix1[i] = a
    for k in range(num_offsets):
      b = grid2[ys1[a] + r + dv[k], xs1[a] + r + du[k]]
      if b >= 0:
        rows[c] = i
        cols[c] = node2[b]
        costs[c] = cost[k]
        c += 1
  for b in range(n2_all):
    if node2[b] >= 0:
      pix2[node2[b]] = b
  draws = np.zeros(max(1, degree), np.int64)
  for i in range(n1):
    k_of_n(state, d1, n1 - 1, draws)
    for a in range(d1):
      j = draws[a] + (1 if draws[a] >= i else 0)
      rows[c] = i
      cols[c] = n2 + j
      costs[c] = ow
      c += 1
  for j in range(n2):
    k_of_n(state, d2, n2 - 1, draws)
    for a in range(d2):
      i = draws[a] + (1 if draws[a] >= j else 0)
      rows[c] = n1 + i
      cols[c] = j
      costs[c] = ow
      c += 1
  for i in range(nmax):
    k_of_n(state, d3, nmin, draws)
    for a in range(d3):
      if n1 < n2:
        rows[c] = n1 + i
        cols[c] = n2 + draws[a]
      else:
        rows[c] = n1 + draws[a]
        cols[c] = n2 + i
      costs[c] = ow
      c += 1
  for i in range(n1):
    rows[c] = i
    cols[c] = n2 + i
    costs[c] = ow * 100
    c += 1
  for j in range(n2):
    rows[c] = n1 + j
    cols[c] = j
    costs[c] = ow * 100
    c += 1
  # CSR by row, keeping the edge order within a row.
  indptr = np.zeros(n + 1, np.int64)
  for e in range(m):
    indptr[rows[e] + 1] += 1
  for i in range(n):
    indptr[i + 1] += indptr[i]
  fill = indptr[:-1].copy()
  indices = np.empty(m, np.int64)
  csr_costs = np.empty(m, np.int64)
  for e in range(m):
    k = fill[rows[e]]
    indices[k] = cols[e]
    csr_costs[k] = costs[e]
    fill[rows[e]] += 1
  col4row = min_cost_assignment(indptr, indices, csr_costs, n)
  for i in range(n1):
    j = col4row[i]
    if j < n2:
      matched1[pix1[i]] = True
      matched2[pix2[j]] = True
  return matched1, matched2


@numba.njit(cache=True, nogil=True)
def _neighbour_code(img, y, x):
  """Bit k = neighbour x_{k+1} of Lam et al.: E, NE, N, NW, W, SW, S, SE."""
  return (
    img[y, x + 1]
    | (img[y - 1, x + 1] << 1)
    | (img[y - 1, x] << 2)
    | (img[y - 1, x - 1] << 3)
    | (img[y, x - 1] << 4)
    | (img[y + 1, x - 1] << 5)
    | (img[y + 1, x] << 6)
    | (img[y + 1, x + 1] << 7)
  )


@numba.njit(cache=True, nogil=True)
def thin_inplace(img, lut1, lut2):
  """Lam-Lee-Suen thinning until stable, in place.

  Args:
    img: uint8 [h, w] 0/1 with a zero one-pixel frame.
    lut1, lut2: bool [256] deletion tables of the two subiterations.
  """
  h, w = img.shape
  # Border pixels: foreground with a background 8-neighbour. Only they can be
  # deleted (the crossing-number test needs a background neighbour); the set
  # only grows as pixels are deleted.
  is_border = np.zeros((h, w), np.bool_)
  border_y = np.empty(h * w, np.int64)
  border_x = np.empty(h * w, np.int64)
  n = 0
  for y in range(1, h - 1):
    for x in range(1, w - 1):
      if img[y, x] and _neighbour_code(img, y, x) != 255:
        is_border[y, x] = True
        border_y[n] = y
        border_x[n] = x
        n += 1
  delete = np.zeros(h * w, np.bool_)
  while True:
    deleted_any = False
    for sub in range(2):
      lut = lut1 if sub == 0 else lut2
      # Decide on the map before the subiteration, then delete.
      for k in range(n):
        delete[k] = lut[_neighbour_code(img, border_y[k], border_x[k])]
      m = n
      for k in range(m):
        if delete[k]:
          y = border_y[k]
          x = border_x[k]
          img[y, x] = 0
          deleted_any = True
          for dy in range(-1, 2):
            for dx in range(-1, 2):
              yy = y + dy
              xx = x + dx
              if img[yy, xx] and not is_border[yy, xx]:
                is_border[yy, xx] = True
                border_y[n] = yy
                border_x[n] = xx
                delete[n] = False
                n += 1
      # Drop the deleted pixels from the border list.
      keep = 0
      for k in range(n):
        if not delete[k] or k >= m:
          border_y[keep] = border_y[k]
          border_x[keep] = border_x[k]
          keep += 1
        else:
          is_border[border_y[k], border_x[k]] = False
      n = keep
      for k in range(n):
        delete[k] = False
    if not deleted_any:
      return
