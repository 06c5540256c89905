"""Statistics and contracts of the pixel samplers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from pixelnet_jax import sampling


def _rows(sample):
  return [tuple(c) for c in np.asarray(sample.coords)]


def _blob_valid(height=12, width=15):
  valid = np.zeros((height, width), bool)
  valid[2:7, 3:11] = True  # 40 valid pixels.
  valid[9, 0] = True
  return jnp.asarray(valid)


def test_same_key_same_pixels_and_different_keys_differ():
  valid = _blob_valid()
  a = sampling.uniform(jax.random.key(0), valid, 20)
  b = sampling.uniform(jax.random.key(0), valid, 20)
  c = sampling.uniform(jax.random.key(1), valid, 20)
  np.testing.assert_array_equal(a.coords, b.coords)
  assert _rows(a) != _rows(c)


def test_uniform_never_returns_invalid_and_has_no_duplicates():
  valid = _blob_valid()
  for seed in range(20):
    s = sampling.uniform(jax.random.key(seed), valid, 41)
    coords = np.asarray(s.coords)
    assert np.asarray(valid)[coords[:, 0], coords[:, 1]].all()
    assert len(set(_rows(s))) == 41  # Exactly enough valid pixels: all distinct.
    assert bool(s.mask.all())


def test_uniform_with_too_few_pixels_takes_each_once_then_repeats():
  valid = _blob_valid()
  s = sampling.uniform(jax.random.key(3), valid, 100)
  coords = np.asarray(s.coords)
  assert np.asarray(valid)[coords[:, 0], coords[:, 1]].all()
  assert len(set(_rows(s))) == 41
  assert bool(s.mask.all())


def test_no_valid_pixel_gives_false_mask():
  s = sampling.uniform(jax.random.key(0), jnp.zeros((5, 6), bool), 7)
  assert s.coords.shape == (7, 2) and s.coords.dtype == jnp.int32
  assert not bool(s.mask.any())
  s = sampling.stratified(jax.random.key(0), -jnp.ones((5, 6), jnp.int32), 7, 3)
  assert not bool(s.mask.any())


def test_uniform_passes_chi_square_on_coarse_grid():
  height = width = 32
  valid = jnp.ones((height, width), bool)
  sample = jax.jit(jax.vmap(lambda k: sampling.uniform(k, valid, 64).coords))
  coords = np.asarray(sample(jax.random.split(jax.random.key(7), 500))).reshape(-1, 2)
  cells = (coords[:, 0] // 8) * 4 + coords[:, 1] // 8
  counts = np.bincount(cells, minlength=16)
  assert stats.chisquare(counts).pvalue > 1e-3
  # Every single pixel is reachable and none is favoured grossly.
  per_pixel = np.bincount(coords[:, 0] * width + coords[:, 1], minlength=height * width)
  assert per_pixel.min() > 0
  assert stats.chisquare(per_pixel).pvalue > 1e-3


def _stratum_counts(strata, sample, num_strata):
  coords = np.asarray(sample.coords)
  return np.bincount(np.asarray(strata)[coords[:, 0], coords[:, 1]], minlength=num_strata)


def test_stratified_counts_follow_fractions_up_to_rounding():
  rng = np.random.default_rng(0)
  strata = jnp.asarray(rng.integers(0, 3, size=(40, 40)), jnp.int32)
  fractions = np.array([0.5, 0.3, 0.2])
  for num_points in [10, 101, 333]:
    s = sampling.stratified(jax.random.key(num_points), strata, num_points, 3, fractions)
    counts = _stratum_counts(strata, s, 3)
    assert counts.sum() == num_points
    assert np.all(np.abs(counts - fractions * num_points) < 1.0), counts
    assert len(set(_rows(s))) == num_points


def test_stratified_default_is_equal_shares():
  strata = jnp.asarray(np.arange(100).reshape(10, 10) % 4, jnp.int32)
  s = sampling.stratified(jax.random.key(0), strata, 20, 4)
  np.testing.assert_array_equal(_stratum_counts(strata, s, 4), [5, 5, 5, 5])


def test_empty_stratum_share_is_redistributed():
  strata = np.zeros((20, 20), np.int32)
  strata[10:] = 2  # Stratum 1 is empty.
  strata[0, :5] = -1
  s = sampling.stratified(jax.random.key(0), jnp.asarray(strata), 100, 3, [0.5, 0.3, 0.2])
  counts = _stratum_counts(np.where(strata < 0, 0, strata), s, 3)
  # 0.5 and 0.2 renormalised: 71.4 and 28.6 -> 71 and 29.
  np.testing.assert_array_equal(counts, [71, 0, 29])
  coords = np.asarray(s.coords)
  assert (strata[coords[:, 0], coords[:, 1]] >= 0).all()


def test_small_stratum_is_taken_whole_then_repeated():
  strata = np.zeros((10, 10), np.int32)
  strata[0, :3] = 1  # Only 3 edge pixels for a quota of 10.
  s = sampling.stratified(jax.random.key(5), jnp.asarray(strata), 20, 2, [0.5, 0.5])
  coords = np.asarray(s.coords)
  picked = strata[coords[:, 0], coords[:, 1]]
  assert (picked == 1).sum() == 10
  assert {tuple(c) for c in coords[picked == 1]} == {(0, 0), (0, 1), (0, 2)}
  assert len({tuple(c) for c in coords[picked == 0]}) == 10


def test_hard_pixels_keeps_highest_scored_candidates():
  rng = np.random.default_rng(0)
  scores = jnp.asarray(rng.permutation(400).reshape(20, 20), jnp.float32)
  valid = jnp.asarray(rng.random((20, 20)) < 0.8)
  key = jax.random.key(11)
  s = sampling.hard_pixels(key, scores, 40, oversample=3, importance=0.75, valid=valid)
  # The candidates are the sampler's own uniform draw with the same key.
  candidates = sampling.uniform(key, valid, 120)
  cand = np.asarray(candidates.coords)
  cand_scores = np.asarray(scores)[cand[:, 0], cand[:, 1]]
  top = {tuple(c) for c in cand[np.argsort(-cand_scores)[:30]]}
  got = _rows(s)
  assert set(got[:30]) == top
  assert len(set(got)) == 40
  assert set(got) <= {tuple(c) for c in cand}
  coords = np.asarray(s.coords)
  assert np.asarray(valid)[coords[:, 0], coords[:, 1]].all()
  # The random rest is not the next-best candidates.
  rest_scores = np.asarray(scores)[coords[30:, 0], coords[30:, 1]]
  assert rest_scores.mean() < np.sort(cand_scores)[::-1][30:40].mean()


def test_label_helpers():
  labels = jnp.asarray([[0, 1, 255], [2, 255, 1]], jnp.int32)
  np.testing.assert_array_equal(sampling.class_strata(labels), [[0, 1, -1], [2, -1, 1]])
  edges = jnp.asarray([[0.0, 0.6], [0.5, 0.2]])
  valid = jnp.asarray([[True, True], [False, True]])
  np.testing.assert_array_equal(sampling.boundary_strata(edges, 0.5, valid), [[0, 1], [-1, 0]])
  np.testing.assert_allclose(sampling.positive_fractions(0.3), [0.7, 0.3])
  grid = sampling.grid_strata(jnp.ones((8, 8), bool), 2)
  np.testing.assert_array_equal(np.unique(np.asarray(grid)[:4, :4]), [0])
  np.testing.assert_array_equal(np.unique(np.asarray(grid)[4:, 4:]), [3])
  jittered = sampling.grid_strata(jnp.ones((8, 8), bool), 2, key=jax.random.key(1))
  # The jitter moves the cell borders; each row and column still crosses both cells.
  assert not np.array_equal(np.asarray(jittered), np.asarray(grid))
  assert all(len(np.unique(row // 2)) == 2 for row in np.asarray(jittered).T)
  assert set(np.unique(np.asarray(jittered))) == {0, 1, 2, 3}
  # Grid strata give each cell an equal share.
  s = sampling.stratified(jax.random.key(0), grid, 8, 4)
  np.testing.assert_array_equal(_stratum_counts(grid, s, 4), [2, 2, 2, 2])


def _public_calls(num_points):
  """Each public sampler as a function of (key, per-image inputs)."""
  return {
    "uniform": lambda k, valid, scores, strata: sampling.uniform(k, valid, num_points),
    "stratified": lambda k, valid, scores, strata: sampling.stratified(
      k, strata, num_points, 3, jnp.asarray([0.2, 0.3, 0.5])
    ),
    "hard_pixels": lambda k, valid, scores, strata: sampling.hard_pixels(
      k, scores, num_points, valid=valid
    ),
    "class_strata": lambda k, valid, scores, strata: sampling.class_strata(strata),
    "boundary_strata": lambda k, valid, scores, strata: sampling.boundary_strata(
      scores, 0.5, valid
    ),
    "grid_strata": lambda k, valid, scores, strata: sampling.grid_strata(valid, 3, k),
  }


@pytest.mark.parametrize("name", list(_public_calls(1)))
def test_jit_vmap_pmap(name):
  rng = np.random.default_rng(0)
  batch = 8
  valid = jnp.asarray(rng.random((batch, 16, 16)) < 0.7)
  scores = jnp.asarray(rng.random((batch, 16, 16)), jnp.float32)
  strata = jnp.asarray(rng.integers(-1, 3, (batch, 16, 16)), jnp.int32)
  keys = jax.random.split(jax.random.key(0), batch)
  fn = _public_calls(12)[name]
  eager = [fn(keys[i], valid[i], scores[i], strata[i]) for i in range(batch)]
  vmapped = jax.jit(jax.vmap(fn))(keys[:5], valid[:5], scores[:5], strata[:5])
  pmapped = jax.pmap(fn)(keys, valid, scores, strata)
  for i in range(5):
    jax.tree.map(lambda v, e, i=i: np.testing.assert_array_equal(v[i], e), vmapped, eager[i])
  for i in range(batch):
    jax.tree.map(lambda p, e, i=i: np.testing.assert_array_equal(p[i], e), pmapped, eager[i])


def test_num_points_is_static_under_jit():
  valid = _blob_valid()
  fn = jax.jit(sampling.uniform, static_argnums=2)
  assert fn(jax.random.key(0), valid, 9).coords.shape == (9, 2)
  with pytest.raises(TypeError, match="static"):
    jax.jit(sampling.uniform)(jax.random.key(0), valid, 9)


def test_bad_input_is_rejected():
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="num_points"):
    sampling.uniform(key, jnp.ones((4, 4), bool), 0)
  with pytest.raises(ValueError, match=r"\[H, W\]"):
    sampling.uniform(key, jnp.ones((2, 4, 4), bool), 3)
  with pytest.raises(TypeError, match="bool"):
    sampling.uniform(key, jnp.ones((4, 4), jnp.float32), 3)
  with pytest.raises(TypeError, match="int"):
    sampling.stratified(key, jnp.ones((4, 4), jnp.float32), 3, 2)
  with pytest.raises(ValueError, match="one entry per stratum"):
    sampling.stratified(key, jnp.ones((4, 4), jnp.int32), 3, 2, [0.2, 0.3, 0.5])
  with pytest.raises(ValueError, match="sum to 1"):
    sampling.stratified(key, jnp.ones((4, 4), jnp.int32), 3, 2, [0.2, 0.3])
  with pytest.raises(ValueError, match="sum to 1"):
    sampling.stratified(key, jnp.ones((4, 4), jnp.int32), 3, 2, [1.5, -0.5])
  with pytest.raises(ValueError, match="importance"):
    sampling.hard_pixels(key, jnp.ones((4, 4)), 3, importance=1.5)
  with pytest.raises(ValueError, match="positive_fraction"):
    sampling.positive_fractions(2.0)
