"""The shared dataset readers: decoding, checks and their messages (files in tmp_path)."""

import io

import ml_collections
import numpy as np
import pytest
from PIL import Image

from pixelnet_jax.data import readers


def _png(array, mode=None, palette=False):
  image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
  if palette:
    image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def _jpeg(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="JPEG", quality=95)
  return buffer.getvalue()


def test_read_image_rgb_and_grey(tmp_path):
  rgb = np.random.default_rng(0).integers(0, 256, size=(6, 7, 3)).astype(np.uint8)
  (tmp_path / "a.png").write_bytes(_png(rgb))
  out = readers.read_image(tmp_path / "a.png")
  assert out.dtype == np.uint8 and out.shape == (6, 7, 3)
  np.testing.assert_array_equal(out, rgb)
  grey = rgb[..., 0]
  (tmp_path / "g.png").write_bytes(_png(grey))
  np.testing.assert_array_equal(
    readers.read_image(tmp_path / "g.png"), np.repeat(grey[..., None], 3, -1)
  )


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_image_names_the_file(tmp_path, cut):
  rgb = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3)).astype(np.uint8)
  data = _jpeg(rgb)
  path = tmp_path / "broken.jpg"
  path.write_bytes(data[: int(len(data) * cut)])
  with pytest.raises(readers.DataError, match="broken.jpg.*corrupt or truncated"):
    readers.read_image(path)


def test_garbage_and_missing_image(tmp_path):
  (tmp_path / "x.png").write_bytes(b"not an image")
  with pytest.raises(readers.DataError, match="x.png"):
    readers.read_image(tmp_path / "x.png")
  with pytest.raises(readers.MissingDataError, match="y.png"):
    readers.read_image(tmp_path / "y.png")


def test_index_png_reads_indices_not_colours(tmp_path):
  indices = np.array([[0, 1, 255], [20, 3, 0]], np.uint8)
  (tmp_path / "p.png").write_bytes(_png(indices, "P", palette=True))
  (tmp_path / "l.png").write_bytes(_png(indices, "L"))
  for name in ("p.png", "l.png"):
    np.testing.assert_array_equal(readers.read_index_png(tmp_path / name), indices)
  (tmp_path / "rgb.png").write_bytes(_png(np.zeros((2, 3, 3), np.uint8)))
  with pytest.raises(readers.DataError, match="rgb.png.*mode 'RGB'"):
    readers.read_index_png(tmp_path / "rgb.png")


def test_checks():
  image = np.zeros((4, 5, 3), np.uint8)
  readers.check_same_size(image, np.zeros((4, 5), np.int32), "lbl.png")
  with pytest.raises(readers.DataError, match="lbl.png.*6x4.*5x4"):
    readers.check_same_size(image, np.zeros((4, 6), np.int32), "lbl.png")
  readers.check_label_values(np.array([0, 2, 255]), 3, "a")
  with pytest.raises(readers.DataError, match="a.*\\[3, 254\\].*0..2 or 255"):
    readers.check_label_values(np.array([0, 3, 254, 255]), 3, "a")
  with pytest.raises(readers.DataError, match="\\[-1\\]"):
    readers.check_label_values(np.array([-1, 0]), 3, "a")


def test_remap_labels():
  raw = np.array([[0, 1], [11, 1]], np.uint8)
  out = readers.remap_labels(raw, {0: 0, 1: 1, 11: 255}, 2, "f")
  assert out.dtype == np.int32
  np.testing.assert_array_equal(out, [[0, 1], [255, 1]])
  with pytest.raises(readers.DataError, match="f.*\\[7, 12\\]"):
    readers.remap_labels(np.array([0, 7, 12]), {0: 0, 1: 1, 11: 255}, 2, "f")
  table = np.array([0, 0, 1, -1])
  np.testing.assert_array_equal(readers.remap_labels(np.array([0, 1, 2]), table, 2), [0, 0, 1])
  with pytest.raises(readers.DataError, match="\\[3\\]"):
    readers.remap_labels(np.array([3]), table, 2)


def test_segmentation_example():
  image = np.zeros((2, 3, 3), np.uint8)
  ex = readers.segmentation_example(image, np.ones((2, 3), np.uint8), b"id7", 2)
  assert ex["id"] == "id7" and ex["label"].dtype == np.int32
  with pytest.raises(readers.DataError, match="id8"):
    readers.segmentation_example(image, np.full((2, 3), 2), "id8", 2)


def test_dirs_lists_and_backend(tmp_path):
  with pytest.raises(readers.MissingDataError, match="(?s)nowhere.*HOW TO"):
    readers.require_dir(tmp_path / "nowhere", "thing", "HOW TO")
  (tmp_path / "l.txt").write_text("a b\n\n c \n")
  assert readers.read_list(tmp_path / "l.txt") == ["a b", "c"]
  with pytest.raises(readers.MissingDataError, match="empty"):
    readers.ListSource("d", "train", [], lambda r: r)
  config = ml_collections.ConfigDict(dict(backend="folder", manual_dir=None))
  with pytest.raises(readers.MissingDataError, match="(?s)manual_dir.*HOW"):
    readers.check_backend("d", config, "HOW")
  with pytest.raises(ValueError, match="tfds"):
    readers.check_backend("d", {"backend": "zip"}, "")
  assert readers.check_backend("d", {"manual_dir": "m"}, "") == ("tfds", "m")


def test_encode_png_round_trip():
  rgb = np.random.default_rng(2).integers(0, 256, size=(5, 4, 3)).astype(np.uint8)
  np.testing.assert_array_equal(readers.decode_image(readers.encode_png(rgb)), rgb)
