"""The real-data experiment configs: voc_segmentation.py, pascal_context.py, nyu_normals.py.

Each variant loads and validates; ``manual_dir`` follows PIXELNET_TEST_DATA; each ``:cpu``
variant trains a couple of steps on the shared samples (manual directories assembled in
tmp_path from links to them; PASCAL-Context's label maps are written with scipy, as none
exist in the samples) with its model shrunk only so the steps take seconds. The VOC run
also writes predictions: palette PNGs of the argmax.
"""

import importlib.util
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io
from PIL import Image

from pixelnet_jax import config_base, models, predict, train
from pixelnet_jax.data import pipeline, readers, registry
from pixelnet_jax.models import PixelNet

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"
NAMES = ("voc_segmentation", "pascal_context", "nyu_normals")


def load(monkeypatch, name, variant="", data_dir=None):
  """get_config(variant) of experiments/configs/<name>.py with PIXELNET_TEST_DATA = data_dir."""
  if data_dir is None:
    monkeypatch.delenv("PIXELNET_TEST_DATA", raising=False)
  else:
    monkeypatch.setenv("PIXELNET_TEST_DATA", str(data_dir))
  spec = importlib.util.spec_from_file_location(f"{name}_config", CONFIGS / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def shrink(c, manual_dir):
  """Seconds of CPU: a narrower model, small crops, few pixels, two steps, no pictures."""
  c.dataset.manual_dir = str(manual_dir)
  c.model.trunks[c.model.trunk].width_multiplier = 0.125
  c.model.heads.mlp.widths = (32, 32)
  c.crop_size = 64
  c.points_per_image = 128
  c.batch_size = 2
  c.num_devices = 1
  c.num_train_steps = 2
  c.optimizer.warmup_steps = 0
  c.log_every = 1
  c.checkpoint_every = 2
  c.eval_every = 1000
  c.eval.num_pictures = 0
  return c


# ----------------------------------------------------------------------------------------
# Loading and validation.


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("variant", ["", "cpu"])
def test_each_variant_validates(monkeypatch, tmp_path, name, variant):
  c = load(monkeypatch, name, variant, tmp_path)
  task, crop = config_base.validate_config(c, 1)
  assert c.dataset.manual_dir.startswith(str(tmp_path))
  if variant == "":  # The paper's accelerator setting.
    assert c.model.trunk == "vgg16" and crop == (224, 224)
    assert (c.batch_size, c.points_per_image) == (5, 2000)
    assert c.optimizer.name == "sgd" and c.task.sampling == "uniform"
  else:
    assert c.dataset.backend == "folder" and c.model.trunk != "vgg16"
  expected = {"voc_segmentation": 21, "pascal_context": 59, "nyu_normals": 3}[name]
  assert task.num_outputs == expected


def test_splits_and_protocols(monkeypatch, tmp_path):
  voc = load(monkeypatch, "voc_segmentation", "", tmp_path)
  assert (voc.dataset.name, voc.dataset.train_split, voc.dataset.eval_split) == (
    "voc2012",
    "train_aug",
    "val",
  )
  nyu = load(monkeypatch, "nyu_normals", "cpu", tmp_path)
  assert (nyu.dataset.name, nyu.dataset.train_split, nyu.dataset.eval_split) == (
    "nyuv2_normals",
    "train",
    "test",
  )
  context = load(monkeypatch, "pascal_context", "", tmp_path)
  assert context.dataset.background == "ignore" and context.task.num_classes == 59
  for variant in ("60", "cpu,60"):
    c = load(monkeypatch, "pascal_context", variant, tmp_path)
    assert c.dataset.background == "class" and c.task.num_classes == 60
    assert config_base.validate_config(c, 1)[0].num_outputs == 60
  assert load(monkeypatch, "pascal_context", "cpu", tmp_path).dataset.backend == "folder"


@pytest.mark.parametrize("name", NAMES)
def test_unknown_variant_is_an_error(monkeypatch, name):
  with pytest.raises(ValueError, match="(?i)unknown variant"):
    load(monkeypatch, name, "gpu")


@pytest.mark.parametrize("name", NAMES)
def test_without_the_environment_the_source_names_the_field(monkeypatch, name):
  c = load(monkeypatch, name, "cpu", None)
  assert c.dataset.manual_dir is None
  with pytest.raises(FileNotFoundError, match=r"config\.dataset\.manual_dir"):
    registry.get_source(c.dataset.name, c.dataset.train_split, c.dataset)


# ----------------------------------------------------------------------------------------
# A couple of steps on the samples.


@pytest.fixture
def data(test_data_dir):
  return pathlib.Path(test_data_dir)


def _voc_manual(data, target):
  """target/VOCdevkit -> the VOC sample (1 val image), target/dataset -> the SBD sample."""
  if not (data / "voc2012_sample" / "VOCdevkit").is_dir() or not (data / "sbd_sample").is_dir():
    pytest.skip(f"No VOC2012/SBD samples under {data}.")
  target.mkdir()
  os.symlink(data / "voc2012_sample" / "VOCdevkit", target / "VOCdevkit")
  os.symlink(data / "sbd_sample", target / "dataset")
  return target


@pytest.mark.slow
def test_voc_cpu_trains_and_predicts_palette_pngs(monkeypatch, data, tmp_path):
  manual = _voc_manual(data, tmp_path / "manual")
  c = shrink(load(monkeypatch, "voc_segmentation", "cpu", data), manual)
  c.model.heads.mlp.init_std = 0.5  # so that two steps already give a map that varies
  summary = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert summary["step"] == 2 and np.isfinite(summary["loss"])
  assert 0.0 <= summary["eval"]["miou"] <= 1.0

  out = tmp_path / "png"
  written = predict.write_predictions(c, str(tmp_path / "run"), str(out))
  assert written["split"] == "val" and written["ids"] == ["2007_000129"]
  with Image.open(out / "2007_000129.png") as im:
    assert im.mode == "P"
    np.testing.assert_array_equal(
      np.asarray(im.getpalette(), np.uint8).reshape(-1, 3)[:256], readers.voc_palette()
    )
    ids = np.asarray(im)
  example = registry.get_source("voc2012", "val", c.dataset)[0]
  assert ids.shape == example["label"].shape
  # Independently: the final state's dense logits at eval.scale, resized back, argmax.
  task, _ = config_base.validate_config(c, 1)
  model = models.create_model(c.model, task.num_outputs)
  state = summary["state"]
  image = jnp.asarray(pipeline.normalize_image(example["image"]))[None]
  height, width = ids.shape
  scale = float(c.eval.get("scale", 1.0))
  size = (max(1, round(height * scale)), max(1, round(width * scale)))
  if size != (height, width):
    image = jnp.asarray(jax_resize(image, (1, *size, 3)))
  logits = model.apply(
    {"params": state.params, "batch_stats": state.batch_stats},
    image,
    method=PixelNet.predict_dense,
    chunk_size=c.model.dense_chunk_size,
  )
  if size != (height, width):
    logits = jax_resize(logits, (1, height, width, logits.shape[-1]))
  expected = np.argmax(np.asarray(logits)[0], axis=-1)
  assert np.mean(ids == expected) > 0.999  # equal up to float ties
  assert ids.max() < 21


def jax_resize(x, shape):
  return jax.image.resize(x, shape, "linear")


def _context_manual(data, target):
  """VOC2010 JPEGs (links to the samples), scipy-written trainval/*.mat label maps in the
  official structure (full-list ids), the shipped class lists and split lists."""
  lists = data / "pascal_context"
  if not (lists / "classes-59.txt").is_file() or not (data / "sbd_sample" / "img").is_dir():
    pytest.skip(f"No PASCAL-Context class lists / SBD sample under {data}.")
  jpegs = {
    "2008_000051": data / "sbd_sample" / "img" / "2008_000051.jpg",
    "2008_000195": data / "sbd_sample" / "img" / "2008_000195.jpg",
  }
  images = target / "VOCdevkit" / "VOC2010" / "JPEGImages"
  images.mkdir(parents=True)
  (target / "trainval").mkdir()
  rng = np.random.default_rng(0)
  for image_id, path in jpegs.items():
    os.symlink(path, images / f"{image_id}.jpg")
    h, w = np.asarray(Image.open(path)).shape[:2]
    # Blocks of random full-list ids (0 = unlabelled), so classes form regions.
    blocks = rng.integers(0, 460, size=(h // 32 + 1, w // 32 + 1)).astype(np.uint16)
    label = np.kron(blocks, np.ones((32, 32), np.uint16))[:h, :w]
    scipy.io.savemat(target / "trainval" / f"{image_id}.mat", {"LabelMap": label})
  for name in ("classes-400.txt", "classes-59.txt"):
    os.symlink(lists / name, target / name)
  (target / "train.txt").write_text("2008_000051\n")
  (target / "val.txt").write_text("2008_000195\n")
  return target


@pytest.mark.slow
def test_pascal_context_cpu_trains(monkeypatch, data, tmp_path):
  """The 59-class protocol (``cpu,60`` differs in two validated fields only)."""
  manual = _context_manual(data, tmp_path / "manual")
  c = shrink(load(monkeypatch, "pascal_context", "cpu", data), manual)
  summary = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert summary["step"] == 2 and np.isfinite(summary["loss"])
  assert 0.0 <= summary["eval"]["miou"] <= 1.0


@pytest.mark.slow
def test_nyu_cpu_trains_on_the_ten_frames(monkeypatch, data, tmp_path):
  """2 train frames, scored on all 8 test frames at native 288x384."""
  if not (data / "nyuv2_mtan" / "train").is_dir():
    pytest.skip(f"No NYUv2 sample under {data}.")
  c = load(monkeypatch, "nyu_normals", "cpu", data)
  assert c.dataset.manual_dir == str(data / "nyuv2_mtan")
  c = shrink(c, c.dataset.manual_dir)
  assert len(registry.get_source(c.dataset.name, "train", c.dataset)) == 2
  assert len(registry.get_source(c.dataset.name, "test", c.dataset)) == 8
  summary = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert summary["step"] == 2 and np.isfinite(summary["loss"])
  assert 0.0 < summary["eval"]["mean"] < 180.0
