"""VOC2012 (+ SBD train_aug) sources on a manual directory assembled in tmp_path from the
shared samples: palette indices, 255 kept, train_aug composition, TFDS == folder, errors."""

import os
import pathlib
import shutil
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pixelnet_jax.data import readers, registry, voc2012

VAL_ID = "2007_000129"
SBD_IDS = ("2008_000051", "2008_000195")


@pytest.fixture
def samples(test_data_dir):
  voc = pathlib.Path(test_data_dir) / "voc2012_sample"
  sbd = pathlib.Path(test_data_dir) / "sbd_sample"
  if not (voc / "VOCdevkit").is_dir() or not (sbd / "cls").is_dir():
    pytest.skip(f"No VOC2012/SBD samples under {test_data_dir}.")
  return voc, sbd


def _manual_dir(samples, target, sbd_subdir=("benchmark_RELEASE", "dataset")):
  """target/VOCdevkit (symlink) + SBD under target/<sbd_subdir> (symlink), or no SBD."""
  voc, sbd = samples
  target.mkdir(parents=True)
  os.symlink(voc / "VOCdevkit", target / "VOCdevkit")
  if sbd_subdir:
    (target / pathlib.Path(*sbd_subdir)).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(sbd, target / pathlib.Path(*sbd_subdir))
  return target


def _copied_voc(samples, target):
  """A writable copy of the VOC sample: (manual_dir, image path, label path)."""
  voc, _ = samples
  shutil.copytree(voc / "VOCdevkit", target / "VOCdevkit")
  root = target / "VOCdevkit" / "VOC2012"
  return target, root / "JPEGImages" / f"{VAL_ID}.jpg", root / "SegmentationClass" / f"{VAL_ID}.png"


def test_val_example_is_palette_indices_with_255_kept(samples, tmp_path):
  manual = _manual_dir(samples, tmp_path / "m", None)
  source = voc2012.folder_source("val", manual)
  assert len(source) == 1 and len(voc2012.folder_source("trainval", manual)) == 1
  ex = source[0]
  root = samples[0] / "VOCdevkit" / "VOC2012"
  assert ex["id"] == VAL_ID
  np.testing.assert_array_equal(
    ex["image"], np.asarray(Image.open(root / "JPEGImages" / f"{VAL_ID}.jpg"))
  )
  png = Image.open(root / "SegmentationClass" / f"{VAL_ID}.png")
  assert png.mode == "P"
  assert ex["label"].dtype == np.int32 and ex["label"].shape == (500, 334)
  np.testing.assert_array_equal(ex["label"], np.asarray(png))
  counts = dict(zip(*np.unique(ex["label"], return_counts=True)))
  assert {int(k): int(v) for k, v in counts.items()} == {0: 54389, 2: 34183, 15: 61143, 255: 17285}


def test_empty_train_list_is_an_error(samples, tmp_path):
  manual = _manual_dir(samples, tmp_path / "m", None)
  with pytest.raises(readers.MissingDataError, match="empty"):
    voc2012.folder_source("train", manual)


def test_train_aug_without_lists_takes_every_sbd_id(samples, tmp_path):
  manual = _manual_dir(samples, tmp_path / "m")
  source = voc2012.folder_source("train_aug", manual)
  assert [source[i]["id"] for i in range(len(source))] == list(SBD_IDS)
  for i, sbd_id in enumerate(SBD_IDS):
    ex = source[i]
    gt = scipy.io.loadmat(samples[1] / "cls" / f"{sbd_id}.mat")["GTcls"]["Segmentation"][0, 0]
    np.testing.assert_array_equal(ex["label"], gt)
    np.testing.assert_array_equal(
      ex["image"], np.asarray(Image.open(samples[1] / "img" / f"{sbd_id}.jpg"))
    )
    assert set(np.unique(ex["label"]).tolist()) <= set(range(21))


def test_train_aug_composition(samples, tmp_path):
  """VOC train ∪ SBD train+val lists, minus VOC val; VOC labels win for VOC train ids."""
  voc, sbd = samples
  manual = tmp_path / "m"
  shutil.copytree(voc / "VOCdevkit", manual / "VOCdevkit")
  seg = manual / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
  # Pretend SBD's first id is also a VOC train image with a VOC label (all background).
  (seg / "train.txt").write_text(f"{SBD_IDS[0]}\n")
  voc_root = manual / "VOCdevkit" / "VOC2012"
  shutil.copy(sbd / "img" / f"{SBD_IDS[0]}.jpg", voc_root / "JPEGImages")
  h, w = np.asarray(Image.open(sbd / "img" / f"{SBD_IDS[0]}.jpg")).shape[:2]
  Image.fromarray(np.zeros((h, w), np.uint8), mode="L").convert("P").save(
    voc_root / "SegmentationClass" / f"{SBD_IDS[0]}.png"
  )
  dataset = manual / "dataset"
  (dataset / "cls").mkdir(parents=True)
  for i in SBD_IDS:
    os.symlink(sbd / "cls" / f"{i}.mat", dataset / "cls" / f"{i}.mat")
  # The VOC val id listed by SBD is excluded; its files need not exist.
  (dataset / "train.txt").write_text(f"{SBD_IDS[0]}\n{VAL_ID}\n")
  (dataset / "val.txt").write_text(f"{SBD_IDS[1]}\n")
  source = voc2012.folder_source("train_aug", manual)
  assert [r.id for r in source.records] == list(SBD_IDS)
  assert source.records[0].label_path.suffix == ".png"
  assert (source[0]["label"] == 0).all()
  # No SBD img/: the image comes from VOC's JPEGImages.
  assert source.records[1].image_path == voc_root / "JPEGImages" / f"{SBD_IDS[1]}.jpg"
  assert source.records[1].label_path == dataset / "cls" / f"{SBD_IDS[1]}.mat"


def test_tfds_equals_folder(samples, tmp_path):
  manual = _manual_dir(samples, tmp_path / "m")
  data_dir = tmp_path / "tfds"
  for split in ("val", "trainval", "train_aug"):
    a_source = voc2012.tfds_source(split, data_dir, manual)
    b_source = voc2012.folder_source(split, manual)
    assert len(a_source) == len(b_source)
    for i in range(len(a_source)):
      a, b = a_source[i], b_source[i]
      assert a["id"] == b["id"] and a.keys() == b.keys()
      for key in ("image", "label"):
        assert a[key].dtype == b[key].dtype
        np.testing.assert_array_equal(a[key], b[key])
  assert "tensorflow" not in sys.modules
  with pytest.raises(readers.MissingDataError, match="'train'"):
    voc2012.tfds_source("train", data_dir, manual)


def test_registry_folder_backend(samples, tmp_path):
  manual = _manual_dir(samples, tmp_path / "m")
  source = registry.get_source("voc2012", "val", {"manual_dir": str(manual), "backend": "folder"})
  assert len(source) == 1 and source[0]["id"] == VAL_ID


def test_missing_dirs(samples, tmp_path):
  with pytest.raises(readers.MissingDataError, match="VOCtrainval_11-May-2012"):
    voc2012.folder_source("val", tmp_path / "nowhere")
  with pytest.raises(readers.MissingDataError, match="VOCdevkit/VOC2012"):
    voc2012.folder_source("val", tmp_path)
  manual = _manual_dir(samples, tmp_path / "m", None)
  with pytest.raises(readers.MissingDataError, match="(?s)needs SBD.*benchmark.tgz"):
    voc2012.folder_source("train_aug", manual)


def test_corrupt_image(samples, tmp_path):
  manual, image, _ = _copied_voc(samples, tmp_path)
  image.write_bytes(image.read_bytes()[:2000])
  with pytest.raises(readers.DataError, match=f"{VAL_ID}.jpg.*corrupt or truncated"):
    voc2012.folder_source("val", manual)[0]


def test_label_size_mismatch(samples, tmp_path):
  manual, _, label = _copied_voc(samples, tmp_path)
  png = Image.open(label)
  png.crop((0, 0, 300, 400)).save(label)
  with pytest.raises(readers.DataError, match=f"{VAL_ID}.png.*300x400"):
    voc2012.folder_source("val", manual)[0]


def test_label_value_outside_the_classes(samples, tmp_path):
  manual, _, label = _copied_voc(samples, tmp_path)
  png = Image.open(label)
  indices = np.asarray(png).copy()
  indices[0, 0] = 21
  out = Image.fromarray(indices, mode="P")
  out.putpalette(png.getpalette())
  out.save(label)
  with pytest.raises(readers.DataError, match=f"{VAL_ID}.png.*\\[21\\]"):
    voc2012.folder_source("val", manual)[0]


def test_colour_label_is_refused(samples, tmp_path):
  manual, _, label = _copied_voc(samples, tmp_path)
  Image.open(label).convert("RGB").save(label)
  with pytest.raises(readers.DataError, match="mode 'RGB'"):
    voc2012.folder_source("val", manual)[0]


def test_bad_sbd_file(samples, tmp_path):
  manual = _manual_dir(samples, tmp_path / "m", None)
  cls = manual / "dataset" / "cls"
  cls.mkdir(parents=True)
  scipy.io.savemat(cls / f"{SBD_IDS[0]}.mat", {"other": np.zeros(3)})
  (manual / "dataset" / "img").mkdir()
  name = f"{SBD_IDS[0]}.jpg"
  os.symlink(samples[1] / "img" / name, manual / "dataset" / "img" / name)
  with pytest.raises(readers.DataError, match=f"{SBD_IDS[0]}.mat"):
    voc2012.folder_source("train_aug", manual)[0]
