"""Random scale augmentation of the input pipeline: identity at scale 1, value sets kept,
keys aligned, and no change to the stream when it is off."""

import numpy as np
import pytest

from pixelnet_jax.data import pipeline

H, W = 20, 30


def _example(h=H, w=W):
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  rng = np.random.default_rng(0)
  normals = rng.normal(size=(h, w, 3))
  normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
  label = rng.choice(np.array([0, 1, 4, 255]), size=(h, w)).astype(np.int32)
  return {
    "image": rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8),
    "label": label,
    "code": (rows * 100 + cols).astype(np.int32),  # where each pixel came from
    "normals": normals.astype(np.float32),
    "normals_valid": (rows + cols) % 3 != 0,
  }


class _ListSource:
  def __init__(self, examples):
    self._examples = examples

  def __len__(self):
    return len(self._examples)

  def __getitem__(self, i):
    return self._examples[i]


def test_scale_one_is_identity():
  ex = pipeline.select_keys(_example(), None)
  out = pipeline.rescale(ex, 1.0)
  for key in ex:
    assert out[key].dtype == ex[key].dtype
    np.testing.assert_array_equal(out[key], ex[key])
  # Inside augment, scale 1 only consumes one draw of the generator.
  a = pipeline.augment(
    _example(), np.random.default_rng(3), crop_size=(16, 16), scale_range=(1.0, 1.0)
  )
  rng = np.random.default_rng(3)
  rng.uniform(1.0, 1.0)
  b = pipeline.augment(_example(), rng, crop_size=(16, 16))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("scale", [0.37, 0.5, 1.3, 2.0])
def test_labels_keep_their_value_set(scale):
  ex = pipeline.select_keys(_example(), None)
  out = pipeline.rescale(ex, scale)
  size = (round(H * scale), round(W * scale))
  for key, value in out.items():
    assert value.shape[:2] == size and value.dtype == ex[key].dtype
  assert set(np.unique(out["label"]).tolist()) <= {0, 1, 4, 255}
  assert out["valid"].all()
  np.testing.assert_allclose(np.linalg.norm(out["normals"], axis=-1), 1, rtol=1e-6)
  # Nearest keys come from one source pixel each: they agree with each other.
  rows, cols = out["code"] // 100, out["code"] % 100
  np.testing.assert_array_equal(out["normals_valid"], (rows + cols) % 3 != 0)
  np.testing.assert_array_equal(out["label"], ex["label"][rows, cols])
  np.testing.assert_array_equal(out["normals"], ex["normals"][rows, cols])
  image = out["image"].astype(int)
  assert image.min() >= ex["image"].min() and image.max() <= ex["image"].max()


def test_image_is_bilinear():
  ramp = np.tile(np.arange(W, dtype=np.float32)[None, :, None], (H, 1, 3))
  out = pipeline.resize(ramp, (H, 2 * W), "linear")
  expected = np.clip((np.arange(2 * W) + 0.5) / 2 - 0.5, 0, W - 1)
  np.testing.assert_allclose(out[0, :, 0], expected, atol=1e-5)
  with pytest.raises(ValueError, match="nearest"):
    pipeline.resize(ramp, (5, 5), "cubic")


def test_train_stream_with_scale():
  source = _ListSource([_example() for _ in range(3)])
  it = pipeline.make_train_iterator(
    source, 2, (12, 14), seed=1, scale_range=(0.5, 1.5), gain_range=None, num_threads=1, prefetch=1
  )
  for _ in range(3):
    batch = next(it)
    assert batch["image"].shape == (2, 12, 14, 3)
    valid = batch["valid"]
    assert set(np.unique(batch["label"][valid]).tolist()) <= {0, 1, 4, 255}
    rows, cols = batch["code"] // 100, batch["code"] % 100
    np.testing.assert_array_equal(batch["normals_valid"][valid], ((rows + cols) % 3 != 0)[valid])
  with pytest.raises(ValueError, match="scale_range"):
    pipeline.train_dataset(source, 2, 12, seed=1, scale_range=(0.0, 1.0))


def test_off_by_default_keeps_the_stream():
  source = _ListSource([_example() for _ in range(3)])
  a = pipeline.train_dataset(source, 2, (12, 14), seed=5)[4]
  b = pipeline.train_dataset(source, 2, (12, 14), seed=5, scale_range=None)[4]
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])


def _max_reference(array, out_size):
  """Scatter-max, source pixel by source pixel: along a shrunk axis, source pixel k
  (spanning [k, k + 1)) goes to the output pixel whose span [i s/o, (i + 1) s/o) holds
  the end of its span, i = ceil((k + 1) o / s) - 1; a grown axis takes the nearest."""
  (h, w), (sh, sw) = out_size, array.shape[:2]

  def owners(size, out):
    if out >= size:
      return None
    return [-(-(k + 1) * out // size) - 1 for k in range(size)]

  if h >= sh:
    array = array[np.minimum(((np.arange(h) + 0.5) * sh / h).astype(int), sh - 1)]
  if w >= sw:
    array = array[:, np.minimum(((np.arange(w) + 0.5) * sw / w).astype(int), sw - 1)]
  rows = owners(sh, h) or list(range(h))
  cols = owners(sw, w) or list(range(w))
  out = np.full((h, w), -np.inf, array.dtype)
  for k, i in enumerate(rows):
    for m, j in enumerate(cols):
      out[i, j] = max(out[i, j], array[k, m])
  return out


@pytest.mark.parametrize("out_size", [(7, 11), (13, 30), (20, 9), (31, 17), (40, 60)])
def test_max_resize_matches_a_pixel_by_pixel_reference(out_size):
  array = np.random.default_rng(1).random((H, W)).astype(np.float32)
  expected = _max_reference(array, out_size)
  np.testing.assert_array_equal(pipeline.resize(array, out_size, "max"), expected)


@pytest.mark.parametrize("scale", [0.37, 0.5, 0.7, 0.9])
def test_thin_boundaries_survive_shrinking_by_max_not_by_nearest(scale):
  specs = {"edges": pipeline.LabelSpec(0.0, resize="max")}
  lost_by_nearest = 0
  for row in range(H):  # A 1-pixel boundary at every possible row.
    edges = np.zeros((H, W), np.float32)
    edges[row, :] = 0.6  # marked by 60% of annotators
    edges[:, row] = 1.0  # and a vertical one
    ex = {"image": np.zeros((H, W, 3), np.uint8), "edges": edges}
    out = pipeline.rescale(ex, scale, specs)["edges"]
    # Every column still crosses the horizontal boundary, every row the vertical one,
    # and no value appears that the source does not have.
    assert (out.max(axis=0) >= 0.6).all() and (out == 1.0).any(axis=1).all()
    assert set(np.unique(out).tolist()) <= set(np.unique(edges).tolist())
    nearest = pipeline.rescale(ex, scale)["edges"]
    lost_by_nearest += not (nearest.max(axis=0) >= 0.6).all()
  # Nearest skips about (1 - scale) of the rows: that share of boundaries is gone.
  assert lost_by_nearest >= max(1, int((1 - scale) * H) - 1)


def test_edges_task_declares_max_resize():
  from pixelnet_jax import tasks

  task = tasks.get_task("edges", tasks.default_task_config("edges"))
  assert task.label_specs()["edges"].resize == "max"
  # Through the train stream: a shrunk crop of a 1-pixel boundary keeps it whole.
  edges = np.zeros((H, W), np.float32)
  edges[:, 13] = 1.0
  source = _ListSource([{"image": np.zeros((H, W, 3), np.uint8), "edges": edges}])
  it = pipeline.make_train_iterator(
    source, 1, (10, 10), seed=2, scale_range=(0.5, 0.5), gain_range=None, flip=False,
    label_keys=("edges",), label_specs=task.label_specs(), num_threads=1, prefetch=1,
  )  # fmt: skip
  crop = next(it)["edges"][0]
  assert (crop == 1.0).any(axis=1).all() and crop.sum() == 10
  with pytest.raises(ValueError, match="resize"):
    pipeline.LabelSpec(0, resize="linear")
