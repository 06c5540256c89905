"""Tests of the built-in procedural dataset (pixelnet_jax.data.procedural)."""

import numpy as np
import pytest

from pixelnet_jax.data import procedural
from pixelnet_jax.data.procedural import ProceduralDataset, generate

KEYS = ("image", "label", "edges", "depth", "normals", "normals_valid", "id")


def _array_keys(example):
  return [k for k in KEYS if k != "id"]


@pytest.mark.parametrize(
  "image_size, hw",
  [(64, (64, 64)), ((64, 100), (64, 100)), ((150, 80), (150, 80)), (224, (224, 224))],
)
def test_shapes_and_dtypes(image_size, hw):
  ex = ProceduralDataset("train", image_size, num_examples=3)[2]
  h, w = hw
  assert set(ex) == set(KEYS)
  assert ex["image"].shape == (h, w, 3) and ex["image"].dtype == np.uint8
  assert ex["label"].shape == (h, w) and ex["label"].dtype == np.int32
  assert ex["edges"].shape == (h, w) and ex["edges"].dtype == np.float32
  assert ex["depth"].shape == (h, w) and ex["depth"].dtype == np.float32
  assert ex["normals"].shape == (h, w, 3) and ex["normals"].dtype == np.float32
  assert ex["normals_valid"].shape == (h, w) and ex["normals_valid"].dtype == np.bool_
  assert isinstance(ex["id"], str)
  assert ex["label"].min() >= 0 and ex["label"].max() < procedural.NUM_CLASSES
  assert set(np.unique(ex["edges"])) <= {0.0, 1.0}


def test_same_seed_gives_same_bytes_and_dataset_matches_generate():
  ds = ProceduralDataset("validation", (72, 96), num_examples=5, seed=7)
  a, b = ds[3], ProceduralDataset("validation", (72, 96), num_examples=5, seed=7)[3]
  c = generate(7, 3, (72, 96), "validation")
  for k in _array_keys(a):
    assert a[k].tobytes() == b[k].tobytes() == c[k].tobytes(), k
  assert a["id"] == b["id"] == c["id"]
  assert ds[-2]["image"].tobytes() == a["image"].tobytes()


def test_indices_seeds_and_splits_give_different_scenes():
  images = [
    generate(0, 0, 64, "train"),
    generate(0, 1, 64, "train"),
    generate(1, 0, 64, "train"),
    generate(0, 0, 64, "validation"),
    generate(0, 0, 64, "test"),
  ]
  for i in range(len(images)):
    for j in range(i + 1, len(images)):
      # Noise alone would differ a little; different scenes differ a lot.
      diff = np.abs(images[i]["image"].astype(int) - images[j]["image"].astype(int))
      assert diff.mean() > 10, (i, j)
      assert images[i]["id"] != images[j]["id"]
  assert generate(0, 0, 64, "val")["image"].tobytes() == images[3]["image"].tobytes()


def test_scene_does_not_depend_on_image_size():
  # Pixel (r, c) at 64^2 has the same centre as the 2x2 block (2r..2r+1) at 128^2's
  # centre; the label at 64^2 must match one of those four pixels almost everywhere.
  small, big = generate(3, 5, 64)["label"], generate(3, 5, 128)["label"]
  blocks = big.reshape(64, 2, 64, 2).transpose(0, 2, 1, 3).reshape(64, 64, 4)
  assert np.mean(np.any(blocks == small[..., None], axis=-1)) > 0.99


def test_label_edges_hand_case():
  label = np.array([[0, 0, 1], [0, 0, 1], [2, 2, 2]])
  expected = np.array([[0, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=np.float32)
  np.testing.assert_array_equal(procedural.label_edges(label), expected)


def test_edges_are_exactly_the_label_discontinuities():
  for i in range(3):
    ex = generate(0, i, (70, 90))
    label = ex["label"]
    # Independent check: replicate-pad, so neighbours outside the image never differ.
    pad = np.pad(label, 1, mode="edge")
    h, w = label.shape
    differs = np.zeros((h, w), bool)
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
      differs |= pad[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] != label
    np.testing.assert_array_equal(ex["edges"], differs.astype(np.float32))
    assert 0.005 < ex["edges"].mean() < 0.5


def test_normals_unit_where_valid_zero_elsewhere_and_facing_the_camera():
  for size in (64, (96, 128)):
    ex = generate(0, 4, size)
    valid, n, depth = ex["normals_valid"], ex["normals"], ex["depth"]
    assert 0.5 < valid.mean() < 1.0  # some holes, mostly valid
    np.testing.assert_allclose(np.linalg.norm(n[valid], axis=-1), 1.0, atol=1e-5)
    assert np.all(n[~valid] == 0) and np.all(depth[~valid] == 0)
    assert np.all(depth[valid] > 0)
    # Direction towards the camera in (x right, y down, z to camera) coordinates.
    h, w = valid.shape
    f = procedural.focal_length(size)
    r, c = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    to_cam = np.stack([-(c - w / 2) / f, -(r - h / 2) / f, np.ones_like(r)], -1)
    assert np.all(np.sum(n * to_cam, -1)[valid] > 0)


def _normals_from_depth(depth, f):
  """Normals of the back-projected depth by central differences: [H-2, W-2, 3]."""
  z = depth.astype(np.float64)
  h, w = z.shape
  r, c = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
  points = np.stack([(c - w / 2) / f * z, (r - h / 2) / f * z, z], -1)  # x right, y down
  d_col = points[1:-1, 2:] - points[1:-1, :-2]
  d_row = points[2:, 1:-1] - points[:-2, 1:-1]
  n = np.cross(d_col, d_row)
  n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12
  return n * np.array([1.0, 1.0, -1.0])  # z towards the camera


@pytest.mark.parametrize("size", [64, (80, 120)])
def test_normals_agree_with_depth_gradients(size):
  angles = []
  for i in range(4):
    ex = generate(2, i, size)
    est = _normals_from_depth(ex["depth"], procedural.focal_length(size))
    v = ex["normals_valid"]
    inner = v[1:-1, 1:-1] & v[2:, 1:-1] & v[:-2, 1:-1] & v[1:-1, 2:] & v[1:-1, :-2]
    # abs: the sign is pinned by the facing-the-camera test.
    cos = np.abs(np.sum(est * ex["normals"][1:-1, 1:-1], -1))
    angles.append(np.degrees(np.arccos(np.clip(cos, 0, 1)))[inner])
  angles = np.concatenate(angles)
  assert np.median(angles) < 1.0
  assert np.mean(angles < 5.0) > 0.8  # the rest sit on depth discontinuities


def test_at_least_eight_classes_appear_in_a_few_images():
  seen = set()
  for i in range(6):
    seen |= set(np.unique(generate(0, i, 64)["label"]).tolist())
  assert len(seen) >= 8, seen


def _local_colour_features(image):
  """Mean and std of colour in a 5x5 window plus fine-scale contrast: [H, W, 7]."""
  x = image.astype(np.float64) / 255
  h, w, _ = x.shape
  pad = np.pad(x, ((2, 2), (2, 2), (0, 0)), mode="edge")
  win = np.stack([pad[i : i + h, j : j + w] for i in range(5) for j in range(5)])
  mean, std = win.mean(0), win.std(0)
  chroma = mean / (mean.sum(-1, keepdims=True) + 1e-3)  # shading-invariant
  return np.concatenate(
    [chroma, std, std.mean(-1, keepdims=True) / (mean.mean(-1, keepdims=True) + 1e-3)], -1
  )


def test_class_follows_appearance_not_position():
  train = [generate(0, i, 64) for i in range(24)]
  held = [generate(0, i, 64, "validation") for i in range(12)]
  k = procedural.NUM_CLASSES
  # Every class shows up in both the top and the bottom half of some images.
  for cls in range(k):
    rows = np.concatenate([np.nonzero(ex["label"] == cls)[0] for ex in train + held])
    assert rows.size and rows.min() < 32 <= rows.max(), cls
  # Position alone: the most frequent class at each pixel (fit on train).
  counts = np.zeros((64, 64, k))
  for ex in train:
    counts += np.eye(k)[ex["label"]]
  by_position = counts.argmax(-1)
  pos_acc = np.mean([np.mean(by_position == ex["label"]) for ex in held])
  # Appearance alone: nearest class centroid of local colour statistics.
  feats = np.concatenate([_local_colour_features(ex["image"]).reshape(-1, 7) for ex in train])
  labels = np.concatenate([ex["label"].reshape(-1) for ex in train])
  centroids = np.stack([feats[labels == c].mean(0) for c in range(k)])
  scale = feats.std(0)
  hits = []
  for ex in held:
    f = _local_colour_features(ex["image"]).reshape(-1, 7) / scale
    pred = np.argmin(((f[:, None] - centroids[None] / scale) ** 2).sum(-1), -1)
    hits.append(np.mean(pred == ex["label"].reshape(-1)))
  app_acc = np.mean(hits)
  assert pos_acc < 0.3, pos_acc
  assert app_acc > 2.5 / k and app_acc > pos_acc + 0.15, (app_acc, pos_acc)


@pytest.mark.parametrize(
  "kwargs, name",
  [
    (dict(image_size=32), "image_size"),
    (dict(image_size=225), "image_size"),
    (dict(image_size=(64, 300)), "image_size"),
    (dict(image_size=(64, 64, 64)), "image_size"),
    (dict(image_size=64.5), "image_size"),
    (dict(split="dev"), "split"),
    (dict(num_examples=0), "num_examples"),
    (dict(seed=-1), "seed"),
  ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
  with pytest.raises(ValueError, match=name):
    ProceduralDataset(**kwargs)


def test_bad_index_raises_and_iteration_stops():
  ds = ProceduralDataset(image_size=64, num_examples=2)
  for bad in (2, -3, 10**9):
    with pytest.raises(ValueError, match="index"):
      ds[bad]
    with pytest.raises(IndexError):
      ds[bad]
  with pytest.raises(ValueError, match="index"):
    ds[1.0]
  assert len(list(ds)) == len(ds) == 2
  with pytest.raises(ValueError, match="split"):
    generate(0, 0, 64, "training")
