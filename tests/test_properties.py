"""Property-based tests (hypothesis) of the pure functions in sampling.py and hypercolumn.py.

Shapes come from small fixed classes and every function is jitted once per class, so the
search costs compilations only a few times; the examples vary the masks, strata, keys,
fractions, points and maps. Settings come from the profile in conftest.py ("ci":
derandomized, so CI tries the same examples every run).
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pixelnet_jax import hypercolumn, sampling

SHAPES = [(1, 1), (1, 6), (5, 1), (4, 7), (9, 12)]
NUM_POINTS = [1, 5, 40]

_uniform = jax.jit(sampling.uniform, static_argnums=2)
_stratified = jax.jit(sampling.stratified, static_argnums=(2, 3))
_hard = jax.jit(sampling.hard_pixels, static_argnums=(2, 3, 4))
_grid = jax.jit(sampling.grid_strata, static_argnums=1)
_read = jax.jit(hypercolumn.bilinear_read, static_argnums=2)
_hypercolumn = jax.jit(hypercolumn.hypercolumn, static_argnums=2)

keys = st.integers(0, 2**31 - 1).map(jax.random.key)


@st.composite
def masks(draw, shape=None):
  """[H, W] bool: empty, full, a single pixel, or arbitrary."""
  shape = shape or draw(st.sampled_from(SHAPES))
  kind = draw(st.sampled_from(["empty", "full", "single", "any"]))
  if kind == "any":  # fill=nothing: every pixel drawn, not mostly one fill value
    return draw(hnp.arrays(np.bool_, shape, fill=st.nothing()))
  mask = np.full(shape, kind == "full")
  if kind == "single":
    mask[draw(st.integers(0, shape[0] - 1)), draw(st.integers(0, shape[1] - 1))] = True
  return mask


@st.composite
def strata_maps(draw, num_strata):
  """[H, W] int32 ids in [-2, num_strata + 1]: out-of-range ids are never sampled."""
  shape = draw(st.sampled_from(SHAPES))
  kind = draw(st.sampled_from(["none valid", "one stratum", "any"]))
  if kind == "none valid":
    return np.full(shape, draw(st.sampled_from([-1, num_strata])), np.int32)
  if kind == "one stratum":
    return np.full(shape, draw(st.integers(0, num_strata - 1)), np.int32)
  return draw(
    hnp.arrays(np.int32, shape, elements=st.integers(-2, num_strata + 1), fill=st.nothing())
  )


def fractions(num_strata):
  """Non-negative fractions summing to 1 (zeros included)."""
  weights = st.lists(
    st.sampled_from([0.0, 1e-3, 1.0, 3.0]), min_size=num_strata, max_size=num_strata
  )
  return weights.filter(lambda w: sum(w) > 0).map(
    lambda w: (np.asarray(w) / np.sum(w)).astype(np.float32)
  )


def _check_static(sample, num_points):
  assert sample.coords.shape == (num_points, 2) and sample.coords.dtype == jnp.int32
  assert sample.mask.shape == (num_points,) and sample.mask.dtype == jnp.bool_


def _rows(coords):
  return [tuple(c) for c in np.asarray(coords).tolist()]


def _expected_quotas(counts, fracs, num_points):
  """The documented split: shares of the present strata, renormalised; floats, not ints."""
  present = counts > 0
  weights = np.where(present, fracs, 0.0).astype(np.float64)
  if weights.sum() > 0:
    weights /= weights.sum()
  elif present.any():
    weights = present / present.sum()
  return weights * num_points


# ----------------------------------------------------------------------------
# Samplers.


@given(key=keys, valid=masks(), num_points=st.sampled_from(NUM_POINTS))
def test_uniform_points_lie_in_the_mask_and_mask_is_false_only_without_valid_pixels(
  key, valid, num_points
):
  sample = _uniform(key, jnp.asarray(valid), num_points)
  _check_static(sample, num_points)
  coords, mask = np.asarray(sample.coords), np.asarray(sample.mask)
  count = int(valid.sum())
  if count == 0:
    assert not mask.any() and not coords.any()  # (0, 0) placeholders
    return
  assert mask.all()
  assert valid[coords[:, 0], coords[:, 1]].all()
  distinct = set(_rows(coords))
  # Without replacement while pixels last, then every valid pixel is taken once.
  assert len(distinct) == min(num_points, count)


@st.composite
def stratified_cases(draw):
  """(strata, fractions, num_strata, num_points); one stratum is uniform's case."""
  num_strata = 3
  return (
    draw(strata_maps(num_strata)),
    draw(fractions(num_strata)),
    num_strata,
    draw(st.sampled_from(NUM_POINTS)),
  )


# Whole shares next to a present stratum with fraction 0: no point may go to the latter.
@example(
  key=jax.random.key(0),
  case=(np.arange(12, dtype=np.int32).reshape(4, 3) % 3, np.float32([0.5, 0.5, 0.0]), 3, 40),
)
@given(key=keys, case=stratified_cases())
def test_stratified_counts_follow_the_documented_quotas(key, case):
  strata, fracs, num_strata, num_points = case
  sample = _stratified(key, jnp.asarray(strata), num_points, num_strata, jnp.asarray(fracs))
  _check_static(sample, num_points)
  coords, mask = np.asarray(sample.coords), np.asarray(sample.mask)
  in_range = (strata >= 0) & (strata < num_strata)
  if not in_range.any():
    assert not mask.any() and not coords.any()
    return
  assert mask.all()
  got = strata[coords[:, 0], coords[:, 1]]
  assert ((got >= 0) & (got < num_strata)).all()  # never -1, -2 or >= num_strata
  assert (np.diff(got) >= 0).all()  # grouped by stratum
  counts = np.bincount(strata[in_range], minlength=num_strata)
  quotas = np.bincount(got, minlength=num_strata)
  exact = _expected_quotas(counts, fracs, num_points)
  assert quotas.sum() == num_points
  assert (quotas[counts == 0] == 0).all()
  # Largest remainder: each stratum gets its exact share rounded down or up, and exactly
  # its share when that is a whole number (up to float32 rounding of the shares).
  whole = np.abs(exact - np.round(exact)) < 1e-3
  assert (quotas[whole] == np.round(exact[whole])).all(), (quotas, exact)
  assert (np.abs(quotas - exact)[~whole] < 1).all(), (quotas, exact)
  for s in range(num_strata):  # each stratum: distinct pixels while they last
    picked = coords[got == s]
    assert len(set(_rows(picked))) == min(quotas[s], counts[s])


@given(
  key=keys,
  valid=masks(shape=(9, 12)),
  data=st.data(),
  points_importance=st.sampled_from([(1, 1.0), (5, 0.0), (12, 0.5)]),
  oversample=st.sampled_from([1, 3]),
)
def test_hard_pixels_stay_valid_and_put_the_highest_scores_first(
  key, valid, data, points_importance, oversample
):
  num_points, importance = points_importance  # static: few pairs, few compilations
  scores = data.draw(
    hnp.arrays(np.float32, valid.shape, elements=st.floats(-5, 5, width=32, allow_subnormal=False))
  )
  sample = _hard(key, jnp.asarray(scores), num_points, oversample, importance, jnp.asarray(valid))
  _check_static(sample, num_points)
  coords, mask = np.asarray(sample.coords), np.asarray(sample.mask)
  if not valid.any():
    assert not mask.any()
    return
  assert mask.all() and valid[coords[:, 0], coords[:, 1]].all()
  picked = scores[coords[:, 0], coords[:, 1]]
  num_hard = int(round(importance * num_points))
  if 0 < num_hard < num_points:
    assert picked[:num_hard].min() >= picked[num_hard:].max()
  if oversample * num_points <= valid.sum():  # distinct candidates, distinct picks
    assert len(set(_rows(coords))) == num_points


@given(
  valid=masks(), cells=st.sampled_from([1, 2, 3]), jitter=st.booleans(), seed=st.integers(0, 1000)
)
def test_grid_strata_ids_are_cells_where_valid_and_cover_the_grid(valid, cells, jitter, seed):
  key = jax.random.key(seed) if jitter else None
  strata = np.asarray(_grid(jnp.asarray(valid), cells, key))
  assert strata.shape == valid.shape and strata.dtype == np.int32
  assert (strata[~valid] == -1).all()
  assert ((strata[valid] >= 0) & (strata[valid] < cells**2)).all()
  height, width = valid.shape
  if valid.all() and not jitter and height >= cells and width >= cells:
    assert set(np.unique(strata)) == set(range(cells**2))


# ----------------------------------------------------------------------------
# Hypercolumn reads.

MAP_SHAPES = [(1, 1, 2), (1, 5, 1), (4, 1, 3), (3, 4, 2), (6, 5, 3)]
STRIDES = [1.0, 2.0, 4.0, 2.5, (3.0, 1.5)]
NUM_READS = 12


def _tent_read(fmap, points, stride):
  """Independent reference: tent weights max(0, 1 - |t - i|) over every cell."""
  s_row, s_col = np.broadcast_to(np.asarray(stride, np.float64), (2,))
  h, w, _ = fmap.shape
  t_row = np.clip((points[:, 0] + 0.5) / s_row - 0.5, 0, h - 1)
  t_col = np.clip((points[:, 1] + 0.5) / s_col - 0.5, 0, w - 1)
  w_row = np.maximum(0, 1 - np.abs(t_row[:, None] - np.arange(h)[None]))  # [N, h]
  w_col = np.maximum(0, 1 - np.abs(t_col[:, None] - np.arange(w)[None]))  # [N, w]
  return np.einsum("nh,nw,hwc->nc", w_row, w_col, fmap.astype(np.float64))


def feature_maps(shape=None):
  """[h, w, C] float32 maps. No subnormals: XLA on CPU flushes them to zero (found by the
  "dev" profile: a 1e-45 map read as 0), which is XLA's arithmetic, not the reader's."""
  shape_st = st.just(shape) if shape else st.sampled_from(MAP_SHAPES)
  return shape_st.flatmap(
    lambda s: hnp.arrays(np.float32, s, elements=st.floats(-4, 4, width=32, allow_subnormal=False))
  )


def points(extent=40.0):
  """[N, 2] (row, col): inside, on and far beyond the borders, integers included."""
  coordinate = st.one_of(
    st.floats(-extent, extent, width=32),
    st.integers(-5, 30).map(float),
    st.sampled_from([-1e4, -0.5, 0.0, 1e4]),
  )
  return hnp.arrays(np.float32, (NUM_READS, 2), elements=coordinate)


@given(fmap=feature_maps(), pts=points(), stride=st.sampled_from(STRIDES))
def test_bilinear_read_agrees_with_an_independent_tent_filter(fmap, pts, stride):
  got = np.asarray(_read(jnp.asarray(fmap), jnp.asarray(pts), stride))
  assert got.shape == (NUM_READS, fmap.shape[2]) and got.dtype == np.float32
  np.testing.assert_allclose(
    got, _tent_read(fmap, pts.astype(np.float64), stride), rtol=1e-4, atol=2e-3
  )
  # A convex combination of the map: never outside its range, per channel.
  lo, hi = fmap.min(axis=(0, 1)), fmap.max(axis=(0, 1))
  assert (got >= lo - 1e-5).all() and (got <= hi + 1e-5).all()


@given(fmap=feature_maps(), pts=points(extent=200.0), stride=st.sampled_from(STRIDES))
def test_points_beyond_the_border_read_the_clamped_point(fmap, pts, stride):
  s_row, s_col = np.broadcast_to(np.asarray(stride, np.float64), (2,))
  h, w, _ = fmap.shape
  # Cell centres of the first and last cells, in input pixels.
  lo = np.array([0.5 * s_row - 0.5, 0.5 * s_col - 0.5])
  hi = np.array([(h - 0.5) * s_row - 0.5, (w - 0.5) * s_col - 0.5])
  clamped = np.clip(pts.astype(np.float64), lo, hi).astype(np.float32)
  got = np.asarray(_read(jnp.asarray(fmap), jnp.asarray(pts), stride))
  want = np.asarray(_read(jnp.asarray(fmap), jnp.asarray(clamped), stride))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
  # Beyond the border on both axes: exactly the corner cell.
  corner = (pts < lo).all(axis=1)
  np.testing.assert_array_equal(got[corner], np.broadcast_to(fmap[0, 0], got[corner].shape))
  corner = (pts > hi).all(axis=1)
  np.testing.assert_array_equal(got[corner], np.broadcast_to(fmap[-1, -1], got[corner].shape))


@given(fmap=feature_maps(shape=(1, 1, 3)), pts=points(extent=1e4), stride=st.sampled_from(STRIDES))
def test_a_one_by_one_map_reads_its_value_everywhere(fmap, pts, stride):
  got = np.asarray(_read(jnp.asarray(fmap), jnp.asarray(pts), stride))
  np.testing.assert_array_equal(got, np.broadcast_to(fmap[0, 0], got.shape))


@given(data=st.data(), pts=points(), image_size=st.sampled_from([(8, 10), (7, 5)]))
def test_hypercolumn_concatenates_the_reads_at_strides_image_over_map(data, pts, image_size):
  maps = [data.draw(feature_maps(shape)) for shape in [(8, 10, 2), (4, 5, 1), (3, 2, 3)]]
  got = np.asarray(_hypercolumn([jnp.asarray(m) for m in maps], jnp.asarray(pts), image_size))
  assert got.shape == (NUM_READS, 6)
  want = np.concatenate(
    [
      _tent_read(
        m, pts.astype(np.float64), (image_size[0] / m.shape[0], image_size[1] / m.shape[1])
      )
      for m in maps
    ],
    axis=-1,
  )
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-3)


@given(fmap=feature_maps(), data=st.data(), stride=st.sampled_from(STRIDES))
def test_integer_points_read_the_same_as_their_float_values(fmap, data, stride):
  ints = data.draw(hnp.arrays(np.int32, (NUM_READS, 2), elements=st.integers(-20, 40)))
  assume(ints.size)
  a = np.asarray(_read(jnp.asarray(fmap), jnp.asarray(ints), stride))
  b = np.asarray(_read(jnp.asarray(fmap), jnp.asarray(ints.astype(np.float32)), stride))
  np.testing.assert_array_equal(a, b)
