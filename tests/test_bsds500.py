"""Tests of the BSDS500 TFDS builder, its sources and the dataset registry.

Built from a tiny manual directory (symlinks to 2 train + 1 val images of the shared
sample) in a temporary folder, so the build takes about a second.
"""

import io
import os
import pathlib
import re
import sys
import tarfile

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pixelnet_jax.data import bsds500, registry

TRAIN_IDS = ("100075", "100080")


def _make_manual_dir(data_root: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
  """target/BSR/BSDS500/data/... with 2 train images and the first val image."""
  val_id = sorted(p.stem for p in (data_root / "images" / "val").glob("*.jpg"))[0]
  for split, ids in (("train", TRAIN_IDS), ("val", (val_id,))):
    for kind, ext in (("images", "jpg"), ("groundTruth", "mat")):
      folder = target / "BSR" / "BSDS500" / "data" / kind / split
      folder.mkdir(parents=True, exist_ok=True)
      for example_id in ids:
        os.symlink(data_root / kind / split / f"{example_id}.{ext}", folder / f"{example_id}.{ext}")
  return target


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """(manual_dir, data_dir) of a built tiny BSDS500; skips without the shared data."""
  path = os.environ.get("PIXELNET_TEST_DATA")
  if not path:
    pytest.skip(
      "PIXELNET_TEST_DATA is not set (point it at the shared data samples, e.g. ../shared/data)."
    )
  if not os.path.isdir(path):  # As conftest's test_data_dir: a wrong path must not skip.
    pytest.fail(f"PIXELNET_TEST_DATA={path} is set but is not a directory.", pytrace=False)
  data_root = pathlib.Path(path) / "BSR" / "BSDS500" / "data"
  if not data_root.is_dir():
    pytest.skip(f"No BSDS500 sample under {path}.")
  base = tmp_path_factory.mktemp("bsds500")
  manual_dir = _make_manual_dir(data_root, base / "manual")
  data_dir = base / "tfds"
  bsds500.build(data_dir, manual_dir)
  return manual_dir, data_dir


def _read_mat(path):
  """Independent reading of a BSDS .mat: lists of Boundaries and Segmentation maps."""
  cells = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["groundTruth"]
  return [c.Boundaries for c in cells], [c.Segmentation for c in cells]


def test_builder_has_present_splits_only(tiny):
  _, data_dir = tiny
  builder = bsds500.Bsds500(data_dir=str(data_dir))
  assert builder.is_prepared()
  assert builder.info.file_format.value == "array_record"
  assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {
    "train": 2,
    "val": 1,
  }
  with pytest.raises(bsds500.Bsds500DataError, match="split 'test'"):
    bsds500.Bsds500Source("test", data_dir=data_dir)


def test_examples_match_the_mat_files(tiny):
  manual_dir, data_dir = tiny
  source = bsds500.Bsds500Source("train", data_dir=data_dir)
  assert len(source) == 2
  gt_dir = manual_dir / "BSR" / "BSDS500" / "data" / "groundTruth" / "train"
  image_dir = manual_dir / "BSR" / "BSDS500" / "data" / "images" / "train"
  for i, example_id in enumerate(TRAIN_IDS):  # files in sorted order
    ex = source[i]
    assert ex["id"] == example_id
    boundaries, segmentations = _read_mat(gt_dir / f"{example_id}.mat")
    h, w = boundaries[0].shape
    assert ex["image"].shape == (h, w, 3) and ex["image"].dtype == np.uint8
    np.testing.assert_array_equal(
      ex["image"], np.asarray(Image.open(image_dir / f"{example_id}.jpg"))
    )
    assert ex["boundaries"].shape == (len(boundaries), h, w)
    assert ex["boundaries"].dtype == np.uint8 and ex["segmentations"].dtype == np.uint16
    np.testing.assert_array_equal(ex["boundaries"], np.stack(boundaries))
    np.testing.assert_array_equal(ex["segmentations"], np.stack(segmentations))
    expected_edges = sum(b.astype(np.float64) for b in boundaries) / len(boundaries)
    assert ex["edges"].dtype == np.float32
    np.testing.assert_allclose(ex["edges"], expected_edges, rtol=1e-6)
    assert 0 < ex["edges"].max() <= 1 and ex["edges"].mean() < 0.2


def test_annotator_counts_vary_and_are_kept(tiny):
  manual_dir, data_dir = tiny
  counts = []
  for split in ("train", "val"):
    source = bsds500.Bsds500Source(split, data_dir=data_dir)
    for i in range(len(source)):
      ex = source[i]
      gt = manual_dir / "BSR" / "BSDS500" / "data" / "groundTruth" / split / f"{ex['id']}.mat"
      counts.append(len(_read_mat(gt)[0]))
      assert ex["boundaries"].shape[0] == counts[-1]
  assert len(counts) == 3


def test_reading_needs_no_tensorflow(tiny):
  _, data_dir = tiny
  source = bsds500.Bsds500Source("val", data_dir=data_dir)
  source[0]
  assert "tensorflow" not in sys.modules


def test_folder_source_equals_tfds_source(tiny):
  manual_dir, data_dir = tiny
  tfds_source = bsds500.Bsds500Source("train", data_dir=data_dir)
  folder_source = bsds500.Bsds500FolderSource("train", manual_dir)
  assert len(folder_source) == len(tfds_source)
  for i in range(len(tfds_source)):
    a, b = tfds_source[i], folder_source[i]
    assert sorted(a) == sorted(b) and a["id"] == b["id"]
    for key in ("image", "edges", "boundaries", "segmentations"):
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_builds_from_the_archive(tiny, tmp_path):
  manual_dir, data_dir = tiny
  archive_dir = tmp_path / "manual"
  archive_dir.mkdir()
  with tarfile.open(archive_dir / bsds500.ARCHIVE_NAME, "w:gz", dereference=True) as tar:
    tar.add(manual_dir / "BSR", arcname="BSR")
    info = tarfile.TarInfo("BSR/documentation/readme.txt")  # ignored by the builder
    info.size = 2
    tar.addfile(info, io.BytesIO(b"hi"))
  from_archive = bsds500.Bsds500Source("val", data_dir=tmp_path / "tfds", manual_dir=archive_dir)
  reference = bsds500.Bsds500Source("val", data_dir=data_dir)
  assert len(from_archive) == 1
  for key in ("image", "edges", "boundaries"):
    np.testing.assert_array_equal(from_archive[0][key], reference[0][key])


def test_missing_manual_dir_explains_the_download(tmp_path):
  with pytest.raises(bsds500.Bsds500DataError) as missing:
    bsds500.Bsds500Source("train", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "nowhere")
  message = str(missing.value)
  assert "nowhere" in message and "BSR_bsds500.tgz" in message
  assert "berkeley.edu" in message
  (tmp_path / "empty_but_there").mkdir()
  (tmp_path / "empty_but_there" / "notes.txt").write_text("not the data")
  with pytest.raises(bsds500.Bsds500DataError, match="BSR/BSDS500/data"):
    bsds500.Bsds500Source(
      "train", data_dir=tmp_path / "tfds2", manual_dir=tmp_path / "empty_but_there"
    )


def test_registry_builds_bsds_sources(tiny):
  manual_dir, data_dir = tiny
  source = registry.get_source(
    "bsds500", "val", {"data_dir": str(data_dir), "manual_dir": str(manual_dir)}
  )
  assert isinstance(source, bsds500.Bsds500Source) and len(source) == 1
  folder = registry.get_source(
    "bsds500", "train", {"backend": "folder", "manual_dir": str(manual_dir)}
  )
  assert isinstance(folder, bsds500.Bsds500FolderSource) and len(folder) == 2


def test_registry_errors_name_the_fix(tmp_path):
  with pytest.raises(ValueError, match=r"Unknown dataset 'nyud'.*bsds500.*procedural"):
    registry.get_source("nyud", "train", None)
  with pytest.raises(bsds500.Bsds500DataError, match="BSR_bsds500.tgz"):
    registry.get_source(
      "bsds500", "train", {"data_dir": str(tmp_path / "tfds"), "manual_dir": str(tmp_path / "none")}
    )
  with pytest.raises(FileNotFoundError, match=r"config\.dataset\.manual_dir"):
    registry.get_source("bsds500", "train", {"backend": "folder"})


def test_registry_builds_procedural_source():
  procedural = pytest.importorskip("pixelnet_jax.data.procedural")
  source = registry.get_source(
    "procedural", "train", {"image_size": 64, "num_examples": {"train": 3}, "seed": 0}
  )
  assert isinstance(source, procedural.ProceduralDataset) and len(source) == 3
  assert source[0]["image"].shape == (64, 64, 3)
  # The pipeline consumes it as is.
  from pixelnet_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  batch = next(pipeline.make_train_iterator(source, 2, 48, seed=0))
  assert batch["image"].shape == (2, 48, 48, 3) and batch["valid"].all()


# ---------------------------------------------------------------------------------------
# Damaged files: errors name the file and what was expected (synthetic, no shared data).


def _synthetic_manual_dir(root: pathlib.Path, shape=(20, 30), gt_shape=None):
  """root/BSR/BSDS500/data with one train image 'x' (JPEG) and its .mat."""
  data = root / "BSR" / "BSDS500" / "data"
  (data / "images" / "train").mkdir(parents=True)
  (data / "groundTruth" / "train").mkdir(parents=True)
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(
    data / "images" / "train" / "x.jpg"
  )
  gt_shape = gt_shape or shape
  _save_gt(
    data / "groundTruth" / "train" / "x.mat",
    [
      {
        "Boundaries": np.eye(*gt_shape, dtype=np.uint8),
        "Segmentation": np.ones(gt_shape, np.uint16),
      }
    ]
    * 2,
  )
  return root, data / "images" / "train" / "x.jpg", data / "groundTruth" / "train" / "x.mat"


def _save_gt(path, structs):
  cell = np.empty((1, len(structs)), dtype=object)
  for a, struct in enumerate(structs):
    cell[0, a] = struct
  scipy.io.savemat(path, {"groundTruth": cell})


def test_synthetic_folder_reads_back(tmp_path):
  manual, _, _ = _synthetic_manual_dir(tmp_path)
  example = bsds500.Bsds500FolderSource("train", manual)[0]
  assert example["image"].shape == (20, 30, 3) and example["boundaries"].shape == (2, 20, 30)
  np.testing.assert_array_equal(example["edges"], np.eye(20, 30))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_jpeg_names_the_file_in_the_folder_source_and_the_build(tmp_path, damage):
  manual, image_path, _ = _synthetic_manual_dir(tmp_path / "m")
  data = image_path.read_bytes()
  image_path.write_bytes(
    {"truncated": data[: len(data) // 2], "garbage": b"not a jpeg", "empty": b""}[damage]
  )
  pattern = rf"Cannot decode image '{re.escape(str(image_path))}'.*corrupt or truncated"
  with pytest.raises(ValueError, match=pattern):
    bsds500.Bsds500FolderSource("train", manual)[0]
  with pytest.raises(ValueError, match=pattern):
    bsds500.build(tmp_path / "tfds", manual)


def test_decode_image_names_the_source():
  with pytest.raises(ValueError, match=r"Cannot decode image .*'42' of split 'val'.*corrupt"):
    bsds500.decode_image(b"\xff\xd8\xff", "'42' of split 'val'")


_B = np.eye(20, 30, dtype=np.uint8)
_S = np.ones((20, 30), np.uint16)


@pytest.mark.parametrize(
  "write,match",
  [
    (lambda p: p.write_bytes(b"MATLAB 5.0 MAT-file, but cut short"), "cannot read the file"),
    (lambda p: scipy.io.savemat(p, {"gt": _B}), r"no groundTruth variable \(it holds \['gt'\]\)"),
    (
      lambda p: scipy.io.savemat(p, {"groundTruth": np.empty((1, 0), object)}),
      r"groundTruth has shape \(1, 0\)",
    ),
    (lambda p: scipy.io.savemat(p, {"groundTruth": _B}), r"groundTruth has shape \(20, 30\)"),
    (
      lambda p: scipy.io.savemat(p, {"groundTruth": np.ones((1, 2))}),
      "groundTruth is not a cell of structs with Boundaries and Segmentation",
    ),
    (
      lambda p: _save_gt(p, [{"Boundaries": _B}]),
      "groundTruth is not a cell of structs with Boundaries and Segmentation",
    ),
    (
      lambda p: _save_gt(p, [{"Boundaries": _B[None], "Segmentation": _S}]),
      r"annotator 1 Boundaries has shape \(1, 20, 30\)",
    ),
    (
      lambda p: _save_gt(
        p, [{"Boundaries": _B, "Segmentation": _S}, {"Boundaries": _B, "Segmentation": _S[:, :29]}]
      ),
      r"annotator 2 Segmentation has shape \(20, 29\) \(annotator 1 Boundaries: \(20, 30\)\)",
    ),
    (
      lambda p: _save_gt(p, [{"Boundaries": "edges", "Segmentation": _S}]),
      "annotator 1 Boundaries",
    ),
    (
      lambda p: _save_gt(p, [{"Boundaries": _B * 3, "Segmentation": _S}]),
      "annotator 1 Boundaries holds values other than 0 and 1",
    ),
    (
      lambda p: _save_gt(p, [{"Boundaries": _B, "Segmentation": _S - 2.5}]),
      "annotator 1 Segmentation holds values that are not uint16 ids",
    ),
  ],
)
def test_bad_ground_truth_names_the_file_and_what_was_expected(tmp_path, write, match):
  manual, _, gt_path = _synthetic_manual_dir(tmp_path)
  write(gt_path)
  with pytest.raises(ValueError, match=rf"BSDS500 ground truth {gt_path}: {match}"):
    bsds500.read_ground_truth(gt_path)
  with pytest.raises(ValueError, match="expected a BSDS .mat with a 1 x A groundTruth cell"):
    bsds500.Bsds500FolderSource("train", manual)[0]


def test_ground_truth_of_another_size_than_the_image_names_both_files(tmp_path):
  manual, image_path, gt_path = _synthetic_manual_dir(tmp_path / "m", gt_shape=(30, 20))
  pattern = (
    rf"BSDS500 image {image_path} is \(20, 30\) \(rows, cols\) but its ground truth "
    rf"{gt_path} is \(30, 20\)"
  )
  with pytest.raises(ValueError, match=pattern):
    bsds500.Bsds500FolderSource("train", manual)[0]
  with pytest.raises(ValueError, match=pattern):
    bsds500.build(tmp_path / "tfds", manual)
