"""Tests of the input pipeline: augmentation alignment, padding masks, determinism."""

import functools

import numpy as np
import pytest

from pixelnet_jax.data import pipeline

H, W = 20, 30
IGNORE = 255
# What a segmentation + normals task declares: the ignore label pads labels, a mirror
# negates the image-right component of normals.
SPECS = {
  "label": pipeline.LabelSpec(IGNORE),
  "normals": pipeline.LabelSpec(0.0, hflip=lambda n: n * np.array([-1, 1, 1], n.dtype)),
  "normals_valid": pipeline.LabelSpec(False),
}


def _coordinate_example(h=H, w=W, index=0):
  """An example whose every key encodes the (row, col) of its pixel."""
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  image = np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.uint8)
  normals = np.stack([cols + 1.0, rows + 1.0, np.full(rows.shape, 5.0)], -1)
  normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
  return {
    "image": image,
    "label": (rows * 100 + cols).astype(np.int32),
    "edges": ((rows * 100 + cols) / 10000.0).astype(np.float32),
    "normals": normals.astype(np.float32),
    "normals_valid": (rows + cols) % 3 != 0,
    "id": f"ex{index}",
  }


class _ListSource:
  def __init__(self, examples):
    self._examples = examples

  def __len__(self):
    return len(self._examples)

  def __getitem__(self, i):
    return self._examples[i]


def _check_alignment(out, crop):
  """Every valid pixel's keys agree with the (row, col) its image pixel encodes."""
  valid = out["valid"]
  assert valid.shape == crop and out["label"].shape == crop
  image = out["image"]  # 0..255 floats, gain disabled
  rows, cols = image[..., 0].astype(int), image[..., 1].astype(int)
  np.testing.assert_array_equal(image[..., 2][valid], 7)
  np.testing.assert_array_equal(out["label"][valid], (rows * 100 + cols)[valid])
  np.testing.assert_allclose(out["edges"][valid], ((rows * 100 + cols) / 10000.0)[valid], rtol=1e-6)
  np.testing.assert_array_equal(out["normals_valid"][valid], ((rows + cols) % 3 != 0)[valid])
  # The valid region is one contiguous window of the source, columns running one way.
  vr, vc = np.nonzero(valid)
  window = (slice(vr.min(), vr.max() + 1), slice(vc.min(), vc.max() + 1))
  assert valid[window].all() and valid.sum() == valid[window].size
  np.testing.assert_array_equal(np.diff(rows[window], axis=0), 1)
  col_steps = np.unique(np.diff(cols[window], axis=1))
  assert len(col_steps) <= 1 and (col_steps.size == 0 or abs(col_steps[0]) == 1)
  flipped = col_steps.size == 1 and col_steps[0] == -1
  expected_nx = (cols + 1.0) * (-1 if flipped else 1)
  expected = np.stack([expected_nx, rows + 1.0, np.full(rows.shape, 5.0)], -1)
  expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
  np.testing.assert_allclose(out["normals"][valid], expected[valid], atol=1e-6)
  # Padding holds the documented fill values.
  pad = ~valid
  assert (out["label"][pad] == IGNORE).all()
  assert (out["edges"][pad] == 0).all() and (out["normals"][pad] == 0).all()
  assert not out["normals_valid"][pad].any() and (image[pad] == 0).all()
  return flipped


@pytest.mark.parametrize("crop", [(8, 12), (20, 30), (26, 41), (10, 40)])
def test_augment_keeps_labels_aligned_with_image(crop):
  example = _coordinate_example()
  flips = []
  for seed in range(24):
    out = pipeline.augment(
      example, np.random.default_rng(seed), crop_size=crop, gain_range=None, label_specs=SPECS
    )
    flips.append(_check_alignment(out, crop))
    assert out["valid"].sum() == min(crop[0], H) * min(crop[1], W)
  assert any(flips) and not all(flips)  # both branches exercised


def test_crop_offsets_cover_every_position():
  example = _coordinate_example()
  starts = set()
  for seed in range(300):
    out = pipeline.augment(
      example,
      np.random.default_rng(seed),
      crop_size=(17, 27),
      flip=False,
      gain_range=None,
      label_specs=SPECS,
    )
    starts.add((int(out["image"][0, 0, 0]), int(out["image"][0, 0, 1])))
  assert starts == {(r, c) for r in range(4) for c in range(4)}


def test_padding_places_small_image_at_random_offsets():
  example = _coordinate_example(h=5, w=6)
  corners = set()
  for seed in range(200):
    out = pipeline.augment(
      example,
      np.random.default_rng(seed),
      crop_size=(7, 8),
      flip=False,
      gain_range=None,
      label_specs=SPECS,
    )
    vr, vc = np.nonzero(out["valid"])
    corners.add((vr.min(), vc.min()))
    assert out["valid"].sum() == 30
  assert corners == {(r, c) for r in range(3) for c in range(3)}


def test_horizontal_flip_applies_the_declared_transform_only():
  normals = np.array([[[0.6, 0.0, 0.8], [0.0, -0.6, 0.8]]], np.float32)  # [1, 2, 3]
  plain = pipeline.horizontal_flip({"normals": normals})
  np.testing.assert_array_equal(plain["normals"], normals[:, ::-1])
  out = pipeline.horizontal_flip({"normals": normals, "label": np.array([[1, 2]])}, SPECS)
  np.testing.assert_array_equal(out["label"], [[2, 1]])
  np.testing.assert_array_equal(
    out["normals"], np.array([[[0.0, -0.6, 0.8], [-0.6, 0.0, 0.8]]], np.float32)
  )


def test_flip_happens_about_half_the_time():
  example = _coordinate_example()
  flips = [
    pipeline.augment(
      example, np.random.default_rng(s), crop_size=(H, W), gain_range=None, label_specs=SPECS
    )["label"][0, 0]
    != 0
    for s in range(400)
  ]
  assert 0.42 < np.mean(flips) < 0.58


def test_color_gain_is_per_channel_in_range_and_image_only():
  example = {"image": np.full((4, 5, 3), 100, np.uint8), "edges": np.full((4, 5), 0.5, np.float32)}
  gains = []
  for seed in range(300):
    out = pipeline.augment(example, np.random.default_rng(seed), crop_size=(4, 5))
    g = out["image"][0, 0] / 100.0
    np.testing.assert_allclose(out["image"], np.broadcast_to(g * 100.0, (4, 5, 3)), rtol=1e-6)
    np.testing.assert_array_equal(out["edges"], 0.5)
    gains.append(g)
  gains = np.array(gains)
  assert gains.min() >= 0.8 - 1e-6 and gains.max() <= 1.3 + 1e-6
  assert gains.min() < 0.82 and gains.max() > 1.28  # the whole range is used
  assert np.abs(np.corrcoef(gains.T)[0, 1]) < 0.2  # channels drawn independently


def test_color_gain_saturates_at_255():
  out = pipeline.color_gain(np.full((1, 1, 3), 250, np.uint8), np.array([1.3, 1.0, 0.8]))
  np.testing.assert_allclose(out[0, 0], [255.0, 250.0, 200.0])


def test_normalize_image_hand_computed():
  image = np.array([[[0, 255, 51]]], np.uint8)
  expected = [(0 - 0.485) / 0.229, (1 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
  out = pipeline.normalize_image(image)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)
  with pytest.raises(ValueError, match="3 RGB channels"):
    pipeline.normalize_image(np.zeros((2, 2)))


def _source(n=6, h=H, w=W):
  examples = []
  for i in range(n):
    ex = _coordinate_example(h, w, index=i)
    ex["label"] = np.full((h, w), i, np.int32)  # identifies the example
    examples.append(ex)
  return _ListSource(examples)


def _assert_batches_equal(a, b):
  assert sorted(a) == sorted(b)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_train_batches_have_documented_keys_shapes_and_normalisation():
  it = pipeline.make_train_iterator(
    _source(), batch_size=3, crop_size=(16, 24), seed=0, label_specs=SPECS
  )
  batch = next(it)
  assert sorted(batch) == ["edges", "image", "label", "normals", "normals_valid", "valid"]
  assert batch["image"].shape == (3, 16, 24, 3) and batch["image"].dtype == np.float32
  assert batch["label"].shape == (3, 16, 24) and batch["normals"].shape == (3, 16, 24, 3)
  assert batch["valid"].dtype == bool and batch["valid"].all()
  # Normalised: channel 2 was 7 * gain with gain in [0.8, 1.3].
  raw = batch["image"] * pipeline.IMAGE_STD + pipeline.IMAGE_MEAN
  assert (raw[..., 2] * 255 >= 7 * 0.8 - 1e-3).all()
  assert (raw[..., 2] * 255 <= 7 * 1.3 + 1e-3).all()


def test_padded_train_pixels_are_masked_and_zero():
  it = pipeline.make_train_iterator(
    _source(h=10, w=12), batch_size=2, crop_size=16, seed=1, label_specs=SPECS
  )
  batch = next(it)
  assert (batch["valid"].sum(axis=(1, 2)) == 120).all()
  pad = ~batch["valid"]
  assert (batch["image"][pad] == 0).all() and (batch["label"][pad] == 255).all()
  assert not batch["normals_valid"][pad].any()


def test_each_epoch_is_a_fresh_permutation():
  n, b = 6, 3
  ds = pipeline.train_dataset(_source(n), batch_size=b, crop_size=8, seed=5)
  epochs = []
  for e in range(3):
    order = np.concatenate([ds[k]["label"][:, 0, 0] for k in range(e * n // b, (e + 1) * n // b)])
    assert sorted(order) == list(range(n))
    epochs.append(tuple(order))
  assert len(set(epochs)) > 1


def test_same_seed_same_batches_and_other_seed_differs():
  source = _source()
  a = pipeline.make_train_iterator(source, 2, (12, 12), seed=3)
  b = pipeline.make_train_iterator(source, 2, (12, 12), seed=3)
  c = pipeline.make_train_iterator(source, 2, (12, 12), seed=4)
  batches_a = [next(a) for _ in range(5)]
  for batch in batches_a:
    _assert_batches_equal(batch, next(b))
  batches_c = [next(c) for _ in range(5)]
  assert any(not np.array_equal(x["image"], y["image"]) for x, y in zip(batches_a, batches_c))


def test_start_step_resumes_exactly():
  source = _source()
  fresh = pipeline.make_train_iterator(source, 2, (12, 12), seed=9)
  batches = [next(fresh) for _ in range(8)]  # crosses epoch boundaries (6 examples)
  for k in (0, 3, 7):
    resumed = pipeline.make_train_iterator(source, 2, (12, 12), seed=9, start_step=k)
    _assert_batches_equal(next(resumed), batches[k])
  # grain's own iterator state restores the same position.
  it = pipeline.make_train_iterator(source, 2, (12, 12), seed=9)
  for _ in range(4):
    next(it)
  state = it.get_state()
  again = pipeline.make_train_iterator(source, 2, (12, 12), seed=9)
  again.set_state(state)
  _assert_batches_equal(next(again), batches[4])


def test_eval_batches_pad_to_largest_and_keep_order():
  examples = [
    _coordinate_example(10, 12, 0),
    _coordinate_example(12, 8, 1),
    _coordinate_example(6, 6, 2),
  ]
  batches = list(pipeline.make_eval_batches(_ListSource(examples), batch_size=2, label_specs=SPECS))
  assert [len(b["id"]) for b in batches] == [2, 1]
  first = batches[0]
  assert first["id"] == ["ex0", "ex1"]
  assert first["image"].shape == (2, 12, 12, 3)
  np.testing.assert_array_equal(first["image_size"], [[10, 12], [12, 8]])
  rows, cols = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
  np.testing.assert_array_equal(first["valid"][0], rows < 10)
  np.testing.assert_array_equal(first["valid"][1], cols < 8)
  np.testing.assert_allclose(
    first["image"][0, :10, :12], pipeline.normalize_image(examples[0]["image"])
  )
  np.testing.assert_array_equal(first["label"][1, :12, :8], examples[1]["label"])
  assert (first["label"][1, :, 8:] == 255).all() and (first["image"][1, :, 8:] == 0).all()
  single = next(iter(pipeline.make_eval_batches(_ListSource(examples[2:]), batch_size=1)))
  assert single["image"].shape == (1, 6, 6, 3) and single["valid"].all()


def test_bad_inputs_raise_clear_errors():
  source = _source()
  with pytest.raises(ValueError, match="crop_size"):
    pipeline.make_train_iterator(source, 2, (0, 4), seed=0)
  with pytest.raises(ValueError, match="seed"):
    pipeline.make_train_iterator(source, 2, 8, seed=-1)
  with pytest.raises(ValueError, match="batch_size"):
    pipeline.make_train_iterator(source, 0, 8, seed=0)
  with pytest.raises(KeyError, match="depth"):
    pipeline.augment(source[0], np.random.default_rng(0), crop_size=(4, 4), label_keys=["depth"])
  with pytest.raises(ValueError, match="empty"):
    pipeline.make_train_iterator(_ListSource([]), 2, 8, seed=0)


def _labels_below(batch, limit):
  """A validation stage as a task passes it: raises on a bad batch."""
  if batch["label"].max() >= limit:
    raise ValueError(f"label {batch['label'].max()} >= {limit}")


def test_validate_runs_on_every_batch_in_the_workers():
  source = _source()  # labels rows * 100 + cols: up to 1929 in a 20 x 30 example
  plain = pipeline.make_train_iterator(source, 2, (12, 12), seed=2)
  checked = pipeline.make_train_iterator(
    source, 2, (12, 12), seed=2, validate=functools.partial(_labels_below, limit=10**6)
  )
  for _ in range(4):  # passes good batches through unchanged
    _assert_batches_equal(next(checked), next(plain))
  strict = pipeline.make_train_iterator(
    source, 2, (12, 12), seed=2, validate=functools.partial(_labels_below, limit=0)
  )
  with pytest.raises(ValueError, match=">= 0"):
    next(strict)
