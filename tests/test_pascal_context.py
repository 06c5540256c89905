"""PASCAL-Context sources on `.mat` label maps written in tmp_path in the official structure
(no real label map exists in the samples), with the shipped class lists."""

import os
import pathlib
import pickle
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pixelnet_jax.data import pascal_context, readers, registry

IDS = {"train": ("2008_000051",), "val": ("2008_000195", "2007_000129")}


def _full_ids(lists_dir):
  """Independent parse of classes-400.txt: name -> id."""
  out = {}
  for line in (lists_dir / "classes-400.txt").read_text().splitlines():
    if line.strip():
      i, name = line.split(":", 1)
      out[name.strip()] = int(i)
  return out


@pytest.fixture
def lists_dir(test_data_dir):
  path = pathlib.Path(test_data_dir) / "pascal_context"
  if not (path / "classes-59.txt").is_file():
    pytest.skip(f"No PASCAL-Context class lists under {test_data_dir}.")
  return path


def _label_map(h, w, full, seed):
  """A LabelMap with unlabelled, 'cat', 'table' (task 'diningtable'), 'accordion'
  (one of the 400 others), 'wood' (the last task class) and random full ids."""
  rng = np.random.default_rng(seed)
  label = rng.integers(0, 460, size=(h, w)).astype(np.uint16)
  label[0, :4] = [0, full["cat"], full["table"], full["accordion"]]
  label[1, 0] = full["wood"]
  return label


@pytest.fixture
def manual(lists_dir, test_data_dir, tmp_path):
  """tmp manual dir: VOC2010 JPEGs (from the samples), trainval/*.mat, lists, class lists."""
  data = pathlib.Path(test_data_dir)
  jpegs = {
    "2008_000051": data / "sbd_sample" / "img" / "2008_000051.jpg",
    "2008_000195": data / "sbd_sample" / "img" / "2008_000195.jpg",
    "2007_000129": data
    / "voc2012_sample"
    / "VOCdevkit"
    / "VOC2012"
    / "JPEGImages"
    / "2007_000129.jpg",
  }
  root = tmp_path / "manual"
  images = root / "VOCdevkit" / "VOC2010" / "JPEGImages"
  images.mkdir(parents=True)
  (root / "trainval").mkdir()
  full = _full_ids(lists_dir)
  for seed, (example_id, path) in enumerate(sorted(jpegs.items())):
    os.symlink(path, images / f"{example_id}.jpg")
    h, w = np.asarray(Image.open(path)).shape[:2]
    scipy.io.savemat(
      root / "trainval" / f"{example_id}.mat", {"LabelMap": _label_map(h, w, full, seed)}
    )
  for name in ("classes-400.txt", "classes-59.txt"):
    os.symlink(lists_dir / name, root / name)
  for split, ids in IDS.items():
    (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
  return root


def _expected(label_map, lists_dir, background):
  """Independent mapping by names."""
  full = _full_ids(lists_dir)
  task = [
    line.split(":", 1)[1].strip()
    for line in (lists_dir / "classes-59.txt").read_text().splitlines()
    if line.strip()
  ]
  alias = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}
  out = np.full(label_map.shape, 255 if background == "ignore" else 0, np.int32)
  for k in range(1, 60):
    out[label_map == full[alias.get(task[k], task[k])]] = k - 1 if background == "ignore" else k
  return out


@pytest.mark.parametrize("background", ["ignore", "class"])
def test_labels_follow_the_59_class_protocol(manual, lists_dir, background):
  source = pascal_context.folder_source("val", manual, background)
  assert len(source) == 2 and [source.records[i][0] for i in range(2)] == list(IDS["val"])
  task = pascal_context.class_names(manual, background)
  for i in range(2):
    ex = source[i]
    label_map = scipy.io.loadmat(manual / "trainval" / f"{ex['id']}.mat")["LabelMap"]
    assert ex["label"].dtype == np.int32 and ex["label"].shape == label_map.shape
    np.testing.assert_array_equal(ex["label"], _expected(label_map, lists_dir, background))
    image = np.asarray(
      Image.open(manual / "VOCdevkit" / "VOC2010" / "JPEGImages" / f"{ex['id']}.jpg")
    )
    np.testing.assert_array_equal(ex["image"], image)
    first_row = [task[v] if v != 255 else None for v in ex["label"][0, :4]]
    bg = None if background == "ignore" else "background"
    assert first_row == [bg, "cat", "diningtable", bg]
    assert task[ex["label"][1, 0]] == "wood"
  assert len(task) == (59 if background == "ignore" else 60)
  assert task[-1] == "wood"


def test_sources_pickle(manual, tmp_path):
  """grain's worker processes receive the source pickled."""
  for source in (
    pascal_context.folder_source("val", manual, "class"),
    pascal_context.tfds_source("val", tmp_path / "tfds", manual, "class"),
  ):
    copy = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(copy[1]["label"], source[1]["label"])


def test_tfds_equals_folder(manual, tmp_path):
  data_dir = tmp_path / "tfds"
  for background in ("ignore", "class"):
    for split in ("train", "val"):
      a_source = pascal_context.tfds_source(split, data_dir, manual, background)
      b_source = pascal_context.folder_source(split, manual, background)
      assert len(a_source) == len(b_source) == len(IDS[split])
      for i in range(len(a_source)):
        a, b = a_source[i], b_source[i]
        assert a["id"] == b["id"] == IDS[split][i]
        for key in ("image", "label"):
          assert a[key].dtype == b[key].dtype
          np.testing.assert_array_equal(a[key], b[key])
  assert "tensorflow" not in sys.modules


def test_registry(manual):
  source = registry.get_source(
    "pascal_context",
    "train",
    {"manual_dir": str(manual), "backend": "folder", "background": "class"},
  )
  assert source[0]["label"].max() <= 59 and (source[0]["label"] != 255).all()
  with pytest.raises(ValueError, match="background"):
    registry.get_source(
      "pascal_context",
      "train",
      {"manual_dir": str(manual), "backend": "folder", "background": "keep"},
    )


def test_split_list_falls_back_to_voc_main(manual):
  (manual / "train.txt").unlink()
  main = manual / "VOCdevkit" / "VOC2010" / "ImageSets" / "Main"
  main.mkdir(parents=True)
  (main / "train.txt").write_text("2008_000195\n")
  source = pascal_context.folder_source("train", manual)
  assert source.records[0][0] == "2008_000195"


def test_missing_files(manual, tmp_path):
  with pytest.raises(readers.MissingDataError, match="trainval.tar.gz"):
    pascal_context.folder_source("val", tmp_path / "nowhere")
  (manual / "classes-59.txt").unlink()
  with pytest.raises(readers.MissingDataError, match="classes-59.txt"):
    pascal_context.folder_source("val", manual)


def test_missing_label_file(manual):
  (manual / "trainval" / "2008_000195.mat").unlink()
  with pytest.raises(readers.MissingDataError, match="2008_000195.mat"):
    pascal_context.folder_source("val", manual)[0]


def test_label_id_above_459(manual):
  path = manual / "trainval" / "2008_000195.mat"
  label_map = scipy.io.loadmat(path)["LabelMap"]
  label_map[5, 5] = 460
  scipy.io.savemat(path, {"LabelMap": label_map})
  with pytest.raises(readers.DataError, match="2008_000195.mat.*\\[460\\]"):
    pascal_context.folder_source("val", manual)[0]


def test_label_size_mismatch(manual):
  path = manual / "trainval" / "2008_000195.mat"
  scipy.io.savemat(path, {"LabelMap": np.zeros((7, 9), np.uint16)})
  with pytest.raises(readers.DataError, match="2008_000195.mat.*9x7"):
    pascal_context.folder_source("val", manual)[0]


def test_mat_without_label_map(manual):
  path = manual / "trainval" / "2008_000195.mat"
  scipy.io.savemat(path, {"Other": np.zeros((7, 9), np.uint16)})
  with pytest.raises(readers.DataError, match="LabelMap.*2008_000195.mat"):
    pascal_context.folder_source("val", manual)[0]


def test_corrupt_image(manual):
  image = manual / "VOCdevkit" / "VOC2010" / "JPEGImages" / "2008_000195.jpg"
  data = image.read_bytes()
  image.unlink()
  image.write_bytes(data[:1000])
  with pytest.raises(readers.DataError, match="2008_000195.jpg.*corrupt"):
    pascal_context.folder_source("val", manual)[0]


def test_mismatched_class_lists(manual, lists_dir):
  (manual / "classes-59.txt").unlink()
  text = (lists_dir / "classes-59.txt").read_text().replace("wood", "woodwork")
  (manual / "classes-59.txt").write_text(text)
  with pytest.raises(readers.DataError, match="'woodwork'"):
    pascal_context.folder_source("val", manual)
