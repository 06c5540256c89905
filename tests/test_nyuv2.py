"""NYUv2 normals sources: the MTAN sample (conversion to the camera convention, flips,
TFDS == folder), the PNG layout written into tmp_path, and errors for bad files."""

import os
import pathlib
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from pixelnet_jax.data import nyuv2, pipeline, readers, registry
from pixelnet_jax.tasks.normals import mirror_normals

FLOOR, CEILING = 4, 2  # MTAN's 13-class labels


@pytest.fixture
def mtan_dir(test_data_dir):
  path = pathlib.Path(test_data_dir) / "nyuv2_mtan"
  if not (path / "val" / "image").is_dir():
    pytest.skip(f"No NYUv2 MTAN sample under {test_data_dir}.")
  return path


def test_layout_and_splits(mtan_dir):
  assert nyuv2.detect_layout(mtan_dir) == "mtan"
  assert len(nyuv2.folder_source("train", mtan_dir)) == 2
  test = nyuv2.folder_source("test", mtan_dir)  # MTAN's val/
  assert len(test) == 8 and [r.id for r in test.records][:3] == ["test/0", "test/1", "test/2"]
  with pytest.raises(ValueError, match="test split"):
    nyuv2.folder_source("val", mtan_dir)


def test_example_against_the_npy_files(mtan_dir):
  ex = nyuv2.folder_source("test", mtan_dir)[3]
  image = np.load(mtan_dir / "val" / "image" / "3.npy")
  raw = np.load(mtan_dir / "val" / "normal" / "3.npy")
  assert ex["id"] == "test/3"
  assert ex["image"].dtype == np.uint8 and ex["image"].shape == (288, 384, 3)
  np.testing.assert_array_equal(ex["image"], np.round(image * 255).astype(np.uint8))
  valid = np.any(raw != 0, axis=-1)
  np.testing.assert_array_equal(ex["normals_valid"], valid)
  assert ex["normals"].dtype == np.float32 and ex["normals_valid"].dtype == bool
  # (x right, y into the scene, z up) -> (x right, y down, z towards the camera).
  expected = np.stack([raw[..., 0], -raw[..., 2], -raw[..., 1]], -1)
  np.testing.assert_allclose(ex["normals"], expected, atol=1e-6)
  assert (ex["normals"][~valid] == 0).all()
  np.testing.assert_allclose(np.linalg.norm(ex["normals"][valid], axis=-1), 1, atol=1e-5)


def test_camera_convention_on_floor_and_ceiling(mtan_dir):
  """Floors point up (-y in y-down coordinates), ceilings down, in every frame."""
  source = nyuv2.folder_source("test", mtan_dir)
  for i in range(len(source)):
    ex = source[i]
    label = np.load(mtan_dir / "val" / "label" / f"{i}.npy")
    for cls, sign in ((FLOOR, -1), (CEILING, 1)):
      mask = (label == cls) & ex["normals_valid"]
      if mask.sum() > 500:
        assert sign * np.median(ex["normals"][mask][:, 1]) > 0.9


def test_horizontal_flip_negates_image_right(mtan_dir):
  ex = nyuv2.folder_source("test", mtan_dir)[0]
  specs = {"normals": pipeline.LabelSpec(0.0, hflip=mirror_normals)}  # the normals task's
  flipped = pipeline.horizontal_flip(pipeline.select_keys(ex, ("normals", "normals_valid")), specs)
  np.testing.assert_array_equal(flipped["normals"][..., 0], -ex["normals"][:, ::-1, 0])
  np.testing.assert_array_equal(flipped["normals"][..., 1:], ex["normals"][:, ::-1, 1:])
  np.testing.assert_array_equal(flipped["normals_valid"], ex["normals_valid"][:, ::-1])
  # x is image right: surfaces on the left of a room face right (x > 0) on average, and
  # after the mirror the same surfaces, now on the right, face left.
  source = nyuv2.folder_source("test", mtan_dir)
  left_x = []
  for i in range(len(source)):
    e = source[i]
    third = e["normals"].shape[1] // 3
    v = e["normals_valid"][:, :third]
    left_x.append(e["normals"][:, :third, 0][v].mean())
  assert np.mean(left_x) > 0


def test_tfds_equals_folder(mtan_dir, tmp_path):
  manual = tmp_path / "manual"  # 2 frames per split, to keep the build short
  for folder in ("train", "val"):
    for sub in ("image", "normal"):
      (manual / folder / sub).mkdir(parents=True)
      for i in range(2):
        os.symlink(mtan_dir / folder / sub / f"{i}.npy", manual / folder / sub / f"{i}.npy")
  data_dir = tmp_path / "tfds"
  for split in nyuv2.SPLITS:
    a_source = nyuv2.tfds_source(split, data_dir, manual)
    b_source = nyuv2.folder_source(split, manual)
    assert len(a_source) == len(b_source) == 2
    for i in range(2):
      a, b = a_source[i], b_source[i]
      assert a["id"] == b["id"] and a.keys() == b.keys()
      for key in ("image", "normals", "normals_valid"):
        assert a[key].dtype == b[key].dtype
        np.testing.assert_array_equal(a[key], b[key])
  assert "tensorflow" not in sys.modules


def test_registry_folder_backend(mtan_dir):
  source = registry.get_source(
    "nyuv2_normals", "test", {"manual_dir": str(mtan_dir), "backend": "folder"}
  )
  assert len(source) == 8 and source[0]["normals"].shape == (288, 384, 3)


def _png_layout(mtan_dir, target):
  """target/{train,test}/{img,norm}/*.png made from the MTAN sample (camera frame)."""
  for split, folder in (("train", "train"), ("test", "val")):
    for sub in ("img", "norm"):
      (target / split / sub).mkdir(parents=True)
    for i in range(2):
      ex = nyuv2.load_example(
        nyuv2.Record(
          "x", mtan_dir / folder / "image" / f"{i}.npy", mtan_dir / folder / "normal" / f"{i}.npy"
        )
      )
      encoded = np.clip(np.round((ex["normals"] + 1) * 127.5), 1, 255).astype(np.uint8)
      encoded[~ex["normals_valid"]] = 0
      Image.fromarray(ex["image"]).save(target / split / "img" / f"{i:06d}.png")
      Image.fromarray(encoded).save(target / split / "norm" / f"{i:06d}.png")
  return target


def test_png_layout(mtan_dir, tmp_path):
  root = _png_layout(mtan_dir, tmp_path / "png")
  assert nyuv2.detect_layout(root) == "png"
  source = nyuv2.folder_source("test", root)
  assert [r.id for r in source.records] == ["test/000000", "test/000001"]
  ex = source[1]
  norm = np.asarray(Image.open(root / "test" / "norm" / "000001.png")).astype(np.float64)
  valid = norm.any(-1)
  expected = norm / 127.5 - 1
  expected /= np.linalg.norm(expected, axis=-1, keepdims=True).clip(1e-12)
  np.testing.assert_array_equal(ex["normals_valid"], valid)
  np.testing.assert_allclose(ex["normals"][valid], expected[valid], atol=1e-6)
  np.testing.assert_array_equal(
    ex["image"], np.asarray(Image.open(root / "test" / "img" / "000001.png"))
  )
  reference = nyuv2.folder_source("test", mtan_dir)[1]["normals"]
  assert np.abs(ex["normals"] - reference)[valid].max() < 0.02
  data_dir = tmp_path / "tfds"
  a = nyuv2.tfds_source("test", data_dir, root)[1]
  for key in ("image", "normals", "normals_valid"):
    np.testing.assert_array_equal(a[key], ex[key])


def test_missing_manual_dir(tmp_path):
  with pytest.raises(readers.MissingDataError, match="lorenmt/mtan"):
    nyuv2.folder_source("train", tmp_path / "nowhere")
  with pytest.raises(readers.MissingDataError, match="train/image"):
    nyuv2.folder_source("train", tmp_path)


def _copy_mtan(mtan_dir, target):
  shutil.copytree(mtan_dir / "train", target / "train")
  return target


def test_missing_normal_file(mtan_dir, tmp_path):
  root = _copy_mtan(mtan_dir, tmp_path)
  (root / "train" / "normal" / "1.npy").unlink()
  with pytest.raises(readers.MissingDataError, match="normal/1.npy"):
    nyuv2.folder_source("train", root)


def test_truncated_npy(mtan_dir, tmp_path):
  root = _copy_mtan(mtan_dir, tmp_path)
  path = root / "train" / "image" / "1.npy"
  path.write_bytes(path.read_bytes()[:10000])
  with pytest.raises(readers.DataError, match="image/1.npy.*corrupt or truncated"):
    nyuv2.folder_source("train", root)[1]


def test_normals_of_another_size(mtan_dir, tmp_path):
  root = _copy_mtan(mtan_dir, tmp_path)
  path = root / "train" / "normal" / "0.npy"
  np.save(path, np.load(path)[:100])
  with pytest.raises(readers.DataError, match="normal/0.npy.*384x100"):
    nyuv2.folder_source("train", root)[0]


def test_non_unit_normals(mtan_dir, tmp_path):
  root = _copy_mtan(mtan_dir, tmp_path)
  path = root / "train" / "normal" / "0.npy"
  np.save(path, (np.load(path) + 1) * 127.5)  # PNG-style values, wrong for MTAN
  with pytest.raises(readers.DataError, match="normal/0.npy.*not unit"):
    nyuv2.folder_source("train", root)[0]


def test_image_out_of_range(mtan_dir, tmp_path):
  root = _copy_mtan(mtan_dir, tmp_path)
  path = root / "train" / "image" / "0.npy"
  np.save(path, np.load(path) * 255)
  with pytest.raises(readers.DataError, match="image/0.npy.*expected \\[0, 1\\]"):
    nyuv2.folder_source("train", root)[0]


def test_corrupt_png(mtan_dir, tmp_path):
  root = _png_layout(mtan_dir, tmp_path / "png")
  path = root / "train" / "norm" / "000000.png"
  path.write_bytes(path.read_bytes()[:3000])
  with pytest.raises(readers.DataError, match="000000.png.*corrupt or truncated"):
    nyuv2.folder_source("train", root)[0]
  os.remove(path)
  with pytest.raises(readers.MissingDataError, match="norm/000000.png"):
    nyuv2.folder_source("train", root)
