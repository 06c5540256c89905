"""The BSDS500 edges experiment end to end on real images: config -> train -> PNGs -> benchmark.

Two train images and one val image of the shared sample are linked into a temporary
manual directory (never copied into the repository); the ``bsds_edges`` config is
shrunk (crop, widths, pixels) only so that the run takes seconds.
"""

import importlib.util
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from pixelnet_jax import config_base, eval_boundaries, models, predict, train
from pixelnet_jax.data import bsds500, registry
from pixelnet_jax.models import PixelNet

CONFIG_PATH = pathlib.Path(__file__).resolve().parents[1] / "experiments/configs/bsds_edges.py"
TRAIN_IDS = 2
VAL_IDS = 1


def load_config(monkeypatch, data_dir):
  """get_config() of experiments/configs/bsds_edges.py with PIXELNET_TEST_DATA = data_dir."""
  if data_dir is None:
    monkeypatch.delenv("PIXELNET_TEST_DATA", raising=False)
  else:
    monkeypatch.setenv("PIXELNET_TEST_DATA", str(data_dir))
  spec = importlib.util.spec_from_file_location("bsds_edges_config", CONFIG_PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.fixture
def manual_dir(test_data_dir, tmp_path):
  """<tmp>/BSR/BSDS500/data/{images,groundTruth}/{train,val} with links to real files."""
  try:
    source_root = bsds500.find_data_root(test_data_dir)
  except bsds500.Bsds500DataError:
    pytest.skip(f"No BSDS500 sample under PIXELNET_TEST_DATA={test_data_dir}.")
  root = tmp_path / "manual" / "BSR" / "BSDS500" / "data"
  for split, count in (("train", TRAIN_IDS), ("val", VAL_IDS)):
    for kind in ("images", "groundTruth"):
      (root / kind / split).mkdir(parents=True)
    for image_id, image_path, gt_path in bsds500.list_split(source_root, split)[:count]:
      (root / "images" / split / f"{image_id}.jpg").symlink_to(image_path)
      (root / "groundTruth" / split / f"{image_id}.mat").symlink_to(gt_path)
  return tmp_path / "manual"


def small_config(monkeypatch, manual):
  """The experiment's config, shrunk for seconds of CPU; its choices (task, taps) kept."""
  c = load_config(monkeypatch, manual)
  c.model.trunks.vgg.width_multiplier = 0.25
  c.model.heads.mlp.widths = (32, 32)
  c.model.heads.mlp.init_std = 0.5  # so that three steps already give a map that varies
  c.model.dense_chunk_size = 8192
  c.crop_size = 64
  c.points_per_image = 128
  c.batch_size = 2
  c.num_devices = 1
  c.num_train_steps = 3
  c.optimizer.warmup_steps = 0
  c.optimizer.learning_rate = 1e-2
  c.log_every = 1
  c.checkpoint_every = 3
  c.eval_every = 1000
  c.eval.num_pictures = 1
  return c


def test_config_reads_the_data_folder_from_the_environment(monkeypatch, tmp_path):
  c = load_config(monkeypatch, tmp_path)
  assert c.dataset.name == "bsds500" and c.dataset.backend == "folder"
  assert c.dataset.manual_dir == str(tmp_path)
  assert c.task.name == "edges" and c.task.sampling == "stratified"
  assert c.model.trunk == "vgg" and c.model.trunks.vgg.fc is False
  # A tap in every stage, the finest included.
  assert {t.split("_")[0] for t in c.model.taps} == {
    f"conv{s + 1}" for s in range(len(c.model.trunks.vgg.stage_widths))
  }
  task, crop = config_base.validate_config(c, 1)
  assert task.soft and crop == (c.crop_size, c.crop_size)


def test_config_without_the_environment_names_the_field(monkeypatch):
  c = load_config(monkeypatch, None)
  assert c.dataset.manual_dir is None
  with pytest.raises(FileNotFoundError, match=r"config\.dataset\.manual_dir"):
    registry.get_source(c.dataset.name, c.dataset.train_split, c.dataset)


def test_png_levels_round_probabilities():
  levels = predict.to_png_levels(np.array([[0.0, 0.5, 1.0], [0.998, 0.1, 1.2]]))
  np.testing.assert_array_equal(levels, [[0, 128, 255], [254, 26, 255]])
  assert levels.dtype == np.uint8
  with pytest.raises(ValueError, match="H, W"):
    predict.to_png_levels(np.zeros((2, 2, 3)))


@pytest.mark.slow
def test_train_predict_and_benchmark_end_to_end(monkeypatch, manual_dir, tmp_path):
  config = small_config(monkeypatch, manual_dir)
  workdir = str(tmp_path / "run")
  summary = train.train_and_evaluate(config, workdir)
  assert summary["step"] == 3 and np.isfinite(summary["loss"])

  out_dir = tmp_path / "png"
  written = predict.write_edge_maps(config, workdir, str(out_dir), split="val")
  val = bsds500.Bsds500FolderSource("val", manual_dir)
  example = val[0]
  assert written["step"] == 3 and written["ids"] == [example["id"]]
  assert sorted(os.listdir(out_dir)) == [f"{example['id']}.png"]
  with Image.open(out_dir / f"{example['id']}.png") as im:
    assert im.mode == "L"
    png = np.asarray(im)
  assert png.shape == example["image"].shape[:2]  # native resolution (321 x 481 or 481 x 321)

  # Independently: the final state's dense logits, sigmoid, x 255, in one chunk per row.
  state = summary["state"]
  model = models.create_model(config.model, config_base.validate_config(config, 1)[0].num_outputs)
  image = jnp.asarray(bsds500_normalized(example["image"]))[None]
  logits = jax.jit(
    lambda v, x: model.apply(v, x, method=PixelNet.predict_dense, chunk_size=png.shape[1])
  )({"params": state.params, "batch_stats": state.batch_stats}, image)
  expected = np.asarray(jax.nn.sigmoid(logits[0, ..., 0])) * 255.0
  assert np.max(np.abs(png.astype(np.float64) - expected)) <= 0.5 + 1e-3
  assert png.std() > 0  # a map, not a constant

  results_path = tmp_path / "bench" / "results.json"
  results_path.parent.mkdir()
  gt_dir = manual_dir / "BSR/BSDS500/data/groundTruth/val"
  results = eval_boundaries.main(
    [
      "--pred-dir",
      str(out_dir),
      "--gt-dir",
      str(gt_dir),
      "--thresholds",
      "5",
      "--nms",
      "--out",
      str(results_path),
    ]
  )
  assert results["num_images"] == 1 and results["nms"] is True
  with open(results_path) as f:
    assert json.load(f)["ods_f"] == pytest.approx(results["ods_f"])
  assert (results_path.parent / "pr_curve.png").is_file()
  r, p, f = results["ods_recall"], results["ods_precision"], results["ods_f"]
  assert 0.0 <= f <= 1.0 and f == pytest.approx(2 * p * r / max(p + r, 1e-12), abs=1e-6)
  assert 0.0 <= results["ois_f"] <= 1.0 and 0.0 <= results["ap"] <= 1.0


def bsds500_normalized(image):
  from pixelnet_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  return pipeline.normalize_image(image)


class _SigmoidTask:
  """decode = sigmoid of the first output, as the edges task's."""

  @staticmethod
  def decode(dense):
    return jax.nn.sigmoid(dense[..., 0])


def test_multiscale_decode_averages_maps_at_the_input_size():
  fake_predict = lambda scale, images: images[..., :1] * scale  # logits = channel 0 x 2
  images = jnp.full((1, 9, 12, 3), 0.7).at[0, :, 6:, 0].set(-0.4)  # two flat halves
  one = predict.multiscale_decode(fake_predict, _SigmoidTask, 2.0, images, (1.0,))
  np.testing.assert_allclose(one, jax.nn.sigmoid(2.0 * images[..., 0]), rtol=1e-6)
  many = predict.multiscale_decode(fake_predict, _SigmoidTask, 2.0, images, (0.5, 1.0, 2.0))
  assert many.shape == (1, 9, 12)
  # Far from the step every scale sees the flat value, so the average is that value.
  np.testing.assert_allclose(many[0, :, :2], jax.nn.sigmoid(1.4), rtol=1e-5)
  np.testing.assert_allclose(many[0, :, -2:], jax.nn.sigmoid(-0.8), rtol=1e-5)
  # Near it the coarse scale blurs: the map differs from the single-scale one.
  assert np.max(np.abs(np.asarray(many) - np.asarray(one))) > 1e-3
  with pytest.raises(ValueError, match="positive"):
    predict.multiscale_decode(fake_predict, _SigmoidTask, 2.0, images, (0.0,))
