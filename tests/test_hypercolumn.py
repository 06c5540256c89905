"""Hypercolumn reads against dense resizing and an independent NumPy reader."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from pixelnet_jax import hypercolumn


def _grid(height, width):
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  return jnp.asarray(np.stack([rows, cols], -1).reshape(-1, 2), jnp.float32)


def _numpy_read(fmap, points, stride_rc):
  """Independent reference: explicit loops over points, half-pixel centres, clamped."""
  fmap = np.asarray(fmap, np.float64)
  h, w, _ = fmap.shape
  out = []
  for r, c in np.asarray(points, np.float64):
    tr = min(max((r + 0.5) / stride_rc[0] - 0.5, 0.0), h - 1)
    tc = min(max((c + 0.5) / stride_rc[1] - 0.5, 0.0), w - 1)
    r0, c0 = int(np.floor(tr)), int(np.floor(tc))
    r1, c1 = min(r0 + 1, h - 1), min(c0 + 1, w - 1)
    ar, ac = tr - r0, tc - c0
    out.append(
      (1 - ar) * ((1 - ac) * fmap[r0, c0] + ac * fmap[r0, c1])
      + ar * ((1 - ac) * fmap[r1, c0] + ac * fmap[r1, c1])
    )
  return np.stack(out)


def _tap_maps(height, width, rounding):
  rng = np.random.default_rng(0)  # NumPy data: no compile per shape.
  maps = []
  for i, stride in enumerate([1, 2, 4, 8, 16, 32]):
    shape = (max(1, rounding(height / stride)), max(1, rounding(width / stride)), 3 + i)
    maps.append(jnp.asarray(rng.normal(size=shape), jnp.float32))
  return maps


@pytest.mark.parametrize("image_size", [(64, 64), (224, 224), (100, 75), (97, 131)])
@pytest.mark.parametrize("rounding", [np.ceil, np.floor], ids=["ceil", "floor"])
def test_hypercolumn_matches_dense_resize(image_size, rounding):
  height, width = image_size
  maps = _tap_maps(height, width, lambda v: int(rounding(v)))
  got = hypercolumn.hypercolumn(maps, _grid(height, width), image_size)
  want = jnp.concatenate(
    [jax.image.resize(m, (height, width, m.shape[-1]), "linear") for m in maps], -1
  )
  np.testing.assert_allclose(got, want.reshape(height * width, -1), atol=1e-5)


def test_hypercolumn_matches_float64_resize_weights_on_large_odd_image():
  """At 225 x 301, jax.image.resize's own float32 einsum drifts by ~4e-5 on CPU, so
  the dense reference here applies resize's separable weights in float64."""
  from jax._src.image import scale as jax_scale  # The weights resize itself uses.

  height, width = 225, 301
  maps = _tap_maps(height, width, lambda v: int(np.ceil(v)))
  got = hypercolumn.hypercolumn(maps, _grid(height, width), (height, width))
  wants = []
  for m in maps:
    weights = [
      np.asarray(
        jax_scale.compute_weight_mat(
          n_in, n_out, n_out / n_in, 0.0, jax_scale._fill_triangle_kernel, False, False, None
        ),
        np.float64,
      )
      for n_in, n_out in [(m.shape[0], height), (m.shape[1], width)]
    ]
    wants.append(np.einsum("hwc,hH,wW->HWc", np.asarray(m, np.float64), *weights, optimize=True))
  want = np.concatenate(wants, -1).reshape(height * width, -1)
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2, 4, 8, 16, 32])
def test_bilinear_read_matches_resize_for_each_stride(stride):
  rng = np.random.default_rng(stride)
  fmap = jnp.asarray(rng.normal(size=(224 // stride, 224 // stride, 5)), jnp.float32)
  got = hypercolumn.bilinear_read(fmap, _grid(224, 224), stride)
  want = jax.image.resize(fmap, (224, 224, 5), "linear").reshape(-1, 5)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_bilinear_read_matches_numpy_at_real_points():
  rng = np.random.default_rng(1)
  fmap = rng.normal(size=(9, 13, 4)).astype(np.float32)
  # Includes points outside the image: they clamp to the border.
  points = rng.uniform(-20, 140, size=(300, 2)).astype(np.float32)
  for stride in [(10.0, 10.0), (12.5, 7.3)]:
    got = hypercolumn.bilinear_read(jnp.asarray(fmap), jnp.asarray(points), stride)
    np.testing.assert_allclose(got, _numpy_read(fmap, points, stride), atol=1e-5)


def test_points_outside_image_read_the_border():
  fmap = jnp.arange(12.0).reshape(3, 4, 1)
  far = jnp.asarray([[-100.0, -100.0], [1000.0, 1000.0], [-5.0, 1000.0]])
  got = hypercolumn.bilinear_read(fmap, far, 8)[:, 0]
  np.testing.assert_allclose(got, [0.0, 11.0, 3.0])


def test_gradients_flow_into_every_map():
  rng = np.random.default_rng(2)
  maps = [jnp.asarray(rng.normal(size=(s, s, 2)), jnp.float32) for s in [16, 4, 1]]
  points = jnp.asarray(rng.uniform(0, 15, size=(7, 2)), jnp.float32)

  def f(*ms):
    return hypercolumn.hypercolumn(ms, points, (16, 16))

  check_grads(f, maps, order=1, modes=["rev", "fwd"], atol=1e-2, rtol=1e-2)
  grads = jax.grad(lambda ms: f(*ms).sum())(maps)
  for g in grads:
    assert float(jnp.abs(g).sum()) > 0
  # Each point spreads exactly one unit of weight over each map.
  np.testing.assert_allclose([float(g.sum()) for g in grads], [7 * 2.0] * 3, rtol=1e-5)


def test_jit_vmap_and_pmap():
  rng = np.random.default_rng(3)
  maps = [
    jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in [(5, 8, 8, 4), (5, 2, 2, 6)]
  ]
  points = jnp.asarray(rng.uniform(0, 32, size=(5, 11, 2)), jnp.float32)
  fn = lambda ms, p: hypercolumn.hypercolumn(ms, p, (32, 32))
  batched = jax.jit(jax.vmap(fn))(maps, points)
  assert batched.shape == (5, 11, 10)
  np.testing.assert_allclose(batched[3], fn([m[3] for m in maps], points[3]), atol=1e-6)
  n = jax.device_count()
  assert n == 8, "conftest asks for 8 host devices"
  maps8 = [jnp.tile(m[:1], (n, 1, 1, 1)) for m in maps]
  points8 = jnp.tile(points[:1], (n, 1, 1))
  pm = jax.pmap(fn)(maps8, points8)
  np.testing.assert_allclose(pm[7], batched[0], atol=1e-6)
  single = jax.pmap(lambda m, p: hypercolumn.bilinear_read(m, p, 4))(maps8[0], points8)
  assert single.shape == (n, 11, 4)


def test_bad_input_is_rejected_at_trace_time():
  fmap = jnp.zeros((4, 4, 2))
  with pytest.raises(ValueError, match=r"\[h, w, C\]"):
    hypercolumn.bilinear_read(jnp.zeros((4, 4)), jnp.zeros((3, 2)), 2)
  with pytest.raises(ValueError, match=r"\[N, 2\]"):
    hypercolumn.bilinear_read(fmap, jnp.zeros((3, 3)), 2)
  with pytest.raises(TypeError, match="float"):
    hypercolumn.bilinear_read(jnp.zeros((4, 4, 2), jnp.int32), jnp.zeros((3, 2)), 2)
  with pytest.raises(ValueError, match="stride"):
    hypercolumn.bilinear_read(fmap, jnp.zeros((3, 2)), 0)
  with pytest.raises(ValueError, match="stride"):
    hypercolumn.bilinear_read(fmap, jnp.zeros((3, 2)), (1, 2, 3))
  with pytest.raises(ValueError, match="image_size"):
    hypercolumn.hypercolumn([fmap], jnp.zeros((3, 2)), (16,))
  with pytest.raises(ValueError, match="at least one"):
    hypercolumn.hypercolumn([], jnp.zeros((3, 2)), (16, 16))
