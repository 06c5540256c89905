"""Quarter-turn augmentation: every key turns together, vector labels turn with the
image (checked on a field the turn must leave unchanged), all 4 turns are drawn, and the
stream is unchanged when it is off."""

import collections

import numpy as np
import pytest

from pixelnet_jax import tasks
from pixelnet_jax.data import pipeline
from pixelnet_jax.tasks import normals as normals_task


def _example(h, w, seed=0):
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  rng = np.random.default_rng(seed)
  return {
    "image": rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8),
    "code": (rows * 100 + cols).astype(np.int32),  # where each pixel came from
    "edges": (rng.random((h, w)) < 0.1).astype(np.float32),
  }


def _radial_normals(n):
  """Normals tilted away from the image centre in proportion to the distance: a field
  every turn about the centre maps onto itself, so a turned label map must equal it."""
  rows, cols = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5, indexing="ij")
  field = np.stack([cols - n / 2, rows - n / 2, np.full((n, n), 3.0)], axis=-1)
  return (field / np.linalg.norm(field, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5])
def test_every_key_turns_like_np_rot90(k):
  ex = _example(6, 9)
  out = pipeline.rotate90(ex, k)
  for key, value in ex.items():
    np.testing.assert_array_equal(out[key], np.rot90(value, k % 4, axes=(0, 1)))
  assert out["image"].shape[:2] == ((9, 6) if k % 2 else (6, 9))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_normals_turn_with_the_image(k):
  normals = _radial_normals(10)
  specs = {"normals": pipeline.LabelSpec(0.0, rot90=normals_task.turn_normals)}
  out = pipeline.rotate90({"image": np.zeros((10, 10, 3), np.uint8), "normals": normals}, k, specs)
  np.testing.assert_allclose(out["normals"], normals, atol=1e-6)
  # Without the label's own turn the field would be wrong: the check can fail.
  assert not np.allclose(pipeline.rotate90({"normals": normals}, k)["normals"], normals)


def test_half_turn_is_both_mirrors():
  """Two quarter turns of the normals equal the left-right mirror then the up-down one
  (the hflip hook and the rot90 hook agree on the convention)."""
  normals = np.random.default_rng(1).normal(size=(4, 5, 3)).astype(np.float32)
  turned = normals_task.turn_normals(normals, 2)
  mirrored = normals_task.mirror_normals(normals) * np.array([1, -1, 1], np.float32)
  np.testing.assert_allclose(turned, mirrored)


def _turn_of(out, ex):
  """The k whose turned source holds the output's valid pixels as one window."""
  valid = out["valid"]
  rows, cols = np.nonzero(valid)
  block = out["code"][rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
  found = []
  for k in range(4):
    turned = np.rot90(ex["code"], k)
    r0, c0 = np.argwhere(turned == block[0, 0])[0]
    window = turned[r0 : r0 + block.shape[0], c0 : c0 + block.shape[1]]
    if window.shape == block.shape and np.array_equal(window, block):
      found.append(k)
  assert len(found) == 1, found
  return found[0]


def test_augment_draws_all_four_turns_before_the_crop():
  """A 10x14 image and a 12x12 crop: each output is one turn of the source, cropped or
  padded, with the labels turned the same way; over seeds all 4 turns appear."""
  ex = _example(10, 14)
  seen = collections.Counter()
  for seed in range(80):
    out = pipeline.augment(
      ex, np.random.default_rng(seed), crop_size=(12, 12), flip=False, gain_range=None,
      rotate=True, label_keys=("code", "edges"),
    )  # fmt: skip
    assert out["image"].shape == (12, 12, 3)
    valid = out["valid"]
    rows, cols = out["code"][valid] // 100, out["code"][valid] % 100
    np.testing.assert_array_equal(out["image"][valid], ex["image"][rows, cols])
    np.testing.assert_array_equal(out["edges"][valid], ex["edges"][rows, cols])
    seen[_turn_of(out, ex)] += 1
  assert sorted(seen) == [0, 1, 2, 3] and min(seen.values()) >= 10, seen


def test_off_by_default_keeps_the_stream():
  source = [_example(10, 14, seed) for seed in range(3)]
  a = pipeline.train_dataset(source, 2, (8, 8), seed=5)[4]
  b = pipeline.train_dataset(source, 2, (8, 8), seed=5, rotate=False)[4]
  c = pipeline.train_dataset(source, 2, (8, 8), seed=5, rotate=True)[4]
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert any(not np.array_equal(a[key], c[key]) for key in a)


def test_tasks_declare_their_turns():
  normals = tasks.get_task("normals", tasks.default_task_config("normals")).label_specs()
  assert normals["normals"].rot90 is normals_task.turn_normals
  edges = tasks.get_task("edges", tasks.default_task_config("edges")).label_specs()
  assert edges["edges"].rot90 is None  # Annotator fractions are scalars.
