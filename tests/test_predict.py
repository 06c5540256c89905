"""pixelnet-predict for every task: the files each task's writer produces, checked against
an independent dense pass of the trained state, the encodings, multi-scale averaging and
the errors for bad options. Edges (the BSDS PNGs) are covered by tests/test_bsds_edges.py.
"""

import os
import pathlib
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import tiny_config
from PIL import Image

from pixelnet_jax import config_base, models, predict, tasks, train
from pixelnet_jax.data import nyuv2, pipeline, readers, registry
from pixelnet_jax.models import PixelNet
from pixelnet_jax.tasks import normals as normals_task

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "tiny_config.py"


def _dense(config, state, image):
  """Independent dense outputs [H, W, K] of one uint8 image with the state's variables."""
  task, _ = config_base.validate_config(config, 1)
  model = models.create_model(config.model, task.num_outputs)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  x = jnp.asarray(pipeline.normalize_image(image))[None]
  chunk = config.eval.chunk_size or config.model.dense_chunk_size
  return np.asarray(model.apply(variables, x, method=PixelNet.predict_dense, chunk_size=chunk))[0]


def tiny_config_task(name):
  task, _ = config_base.validate_config(tiny_config.get_config(name), 1)
  return task


def _tiny(task):
  c = tiny_config.get_config(task)
  c.num_train_steps = 2
  c.checkpoint_every = 2
  c.model.heads.mlp.init_std = 0.5  # so that two steps already give a map that varies
  c.dataset.num_examples = {"train": 64, "val": 2}
  return c


# ----------------------------------------------------------------------------------------
# Encodings.


def test_voc_palette_has_the_known_colours():
  palette = readers.voc_palette()
  assert palette.shape == (256, 3) and palette.dtype == np.uint8
  assert palette[0].tolist() == [0, 0, 0] and palette[1].tolist() == [128, 0, 0]
  assert palette[15].tolist() == [192, 128, 128]  # person
  assert palette[255].tolist() == [224, 224, 192]  # void
  assert len({tuple(c) for c in palette}) == 256


def test_voc_palette_equals_the_official_label_files(test_data_dir):
  path = pathlib.Path(test_data_dir) / (
    "voc2012_sample/VOCdevkit/VOC2012/SegmentationClass/2007_000129.png"
  )
  if not path.is_file():
    pytest.skip(f"No VOC2012 sample under {test_data_dir}.")
  with Image.open(path) as im:
    assert im.mode == "P"
    official = np.asarray(im.getpalette(), np.uint8).reshape(-1, 3)
  np.testing.assert_array_equal(official[:256], readers.voc_palette())
  # The VOC source carries it for the writer; CamVid's greyscale ids have none.
  voc = registry.get_source(
    "voc2012", "val", {"manual_dir": str(path.parents[3]), "backend": "folder"}
  )
  np.testing.assert_array_equal(voc.label_palette, readers.voc_palette())
  camvid_dir = pathlib.Path(test_data_dir) / "camvid"
  if (camvid_dir / "CamVid").is_dir():
    camvid = registry.get_source("camvid", "test", {"manual_dir": camvid_dir, "backend": "folder"})
    assert camvid.label_palette is None


def test_class_id_png_is_palette_or_greyscale_ids(tmp_path):
  ids = np.array([[0, 1, 2], [20, 15, 3]], np.int32)
  for palette, mode in ((readers.voc_palette(), "P"), (None, "L")):
    path = tmp_path / f"{mode}.png"
    predict.class_id_png(ids, 21, palette).save(path)
    with Image.open(path) as im:
      assert im.mode == mode
      np.testing.assert_array_equal(np.asarray(im), ids)  # the ids, not colours
      if palette is not None:
        assert np.asarray(im.convert("RGB"))[1, 1].tolist() == [192, 128, 128]
    np.testing.assert_array_equal(readers.read_index_png(path), ids)  # the datasets' reader
  with pytest.raises(ValueError, match=r"\[0, 21\)"):
    predict.class_id_png(np.array([[21]]), 21)
  with pytest.raises(ValueError, match="integers"):
    predict.class_id_png(np.zeros((2, 2), np.float32), 21)


def test_normals_rgb_round_trips_within_a_quantisation_step():
  rng = np.random.default_rng(0)
  normals = rng.normal(size=(17, 23, 3))
  normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
  normals[0, 0] = (0, 0, 1)
  normals[0, 1] = (-1, 0, 0)
  rgb = predict.normals_to_rgb(normals)
  assert rgb.dtype == np.uint8 and rgb.shape == normals.shape
  np.testing.assert_array_equal(rgb, np.round((normals + 1) / 2 * 255))
  assert rgb[0, 0].tolist() == [128, 128, 255] and rgb[0, 1].tolist() == [0, 128, 128]
  back = nyuv2.png_normals(rgb)  # the PNG layout's decoder: v / 127.5 - 1
  assert np.max(np.abs(back - normals)) <= 1 / 127.5
  assert not (rgb == 0).all(-1).any()  # (0, 0, 0) means invalid there; no unit vector hits it
  with pytest.raises(ValueError, match="H, W, 3"):
    predict.normals_to_rgb(np.zeros((4, 4)))
  with pytest.raises(ValueError, match="finite"):
    predict.normals_to_rgb(np.full((1, 1, 3), np.nan))


# ----------------------------------------------------------------------------------------
# Writers, options and multi-scale.


def test_every_task_has_a_writer():
  assert set(predict.WRITERS.names()) == set(tasks.available_tasks())


def test_options_a_writer_does_not_take_are_errors():
  assert predict.writer_options("normals", {"save_npy": True}) == {"save_npy": True}
  assert predict.writer_options("normals") == {"save_npy": False}
  with pytest.raises(
    ValueError, match=r"--save_npy does not apply to task 'segmentation'.*normals"
  ):
    predict.writer_options("segmentation", {"save_npy": True})
  with pytest.raises(ValueError, match="no writer for task 'depth'"):
    predict.writer_options("depth")


@pytest.mark.parametrize("scales", [(), (0.0,), (1.0, -1.0), (float("nan"),), ("abc",)])
def test_bad_scales_are_errors(scales):
  with pytest.raises(ValueError, match="scales must be"):
    predict.check_scales(scales)


def test_multiscale_segmentation_averages_probabilities_not_ids():
  """Two scales whose argmaxes disagree: the average of the class probabilities decides."""
  task = tiny_config_task("segmentation")
  writer = predict.get_writer(task, source=None)
  # Scale 1: class 1 barely ahead; scale 2 (resized back): class 0 far ahead.
  logits = {9: jnp.array([0.0, 0.1, -5.0] + [-9.0] * 7), 18: jnp.array([3.0, 0.0] + [-9.0] * 8)}

  def fake_predict(variables, images):
    del variables
    return jnp.broadcast_to(logits[images.shape[1]], (*images.shape[:3], 10))

  images = jnp.zeros((1, 9, 9, 3))
  single = task.decode(fake_predict(None, images))
  assert int(single[0, 0, 0]) == 1
  averaged = predict.multiscale_average(fake_predict, None, images, (1.0, 2.0), writer.average)
  assert averaged.shape == (1, 9, 9, 10)
  np.testing.assert_allclose(np.asarray(averaged).sum(-1), 1.0, rtol=1e-5)
  assert np.all(np.asarray(writer.finish(averaged)) == 0)


def test_multiscale_normals_stay_unit():
  task = tiny_config_task("normals")
  writer = predict.get_writer(task, source=None)
  outputs = {8: jnp.array([1.0, 0.0, 0.0]), 16: jnp.array([0.0, 2.0, 0.0])}

  def fake_predict(variables, images):
    del variables
    return jnp.broadcast_to(outputs[images.shape[1]], (*images.shape[:3], 3))

  averaged = predict.multiscale_average(
    fake_predict, None, jnp.zeros((1, 8, 8, 3)), (1.0, 2.0), writer.average
  )
  final = np.asarray(writer.finish(averaged))
  np.testing.assert_allclose(final[0, 0, 0], np.array([1.0, 1.0, 0.0]) / np.sqrt(2), rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(final, axis=-1), 1.0, rtol=1e-5)


def test_ids_with_folders_and_ids_that_leave_the_folder(tmp_path):
  stem = predict._output_stem(str(tmp_path), "test/0")
  assert stem == str(tmp_path / "test" / "0") and (tmp_path / "test").is_dir()
  for bad in ("../x", "/etc/x", "a//b", ""):
    with pytest.raises(ValueError, match="cannot name a file"):
      predict._output_stem(str(tmp_path), bad)


# ----------------------------------------------------------------------------------------
# End to end on tiny models.


@pytest.mark.slow
def test_segmentation_pngs_hold_the_argmax_of_the_dense_output(tmp_path):
  config = _tiny("segmentation")
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  out = tmp_path / "png"
  written = predict.write_predictions(config, str(tmp_path / "run"), str(out), split="val")
  source = registry.get_source(config.dataset.name, "val", config.dataset)
  assert written["task"] == "segmentation" and written["step"] == 2
  assert written["ids"] == [source[i]["id"] for i in range(len(source))]
  assert written["files"] == [str(out / f"{i}.png") for i in written["ids"]]
  varied = False
  for i, image_id in enumerate(written["ids"]):
    example = source[i]
    with Image.open(out / f"{image_id}.png") as im:
      assert im.mode == "L"  # the procedural dataset has no palette
      ids = np.asarray(im)
    expected = np.argmax(_dense(config, summary["state"], example["image"]), axis=-1)
    np.testing.assert_array_equal(ids, expected)
    assert ids.max() < config.task.num_classes  # the ignore label is never predicted
    varied |= len(np.unique(ids)) > 1
  assert varied

  few = predict.write_predictions(
    config, str(tmp_path / "run"), str(tmp_path / "few"), split="val", limit=1
  )
  assert few["ids"] == written["ids"][:1] and len(os.listdir(tmp_path / "few")) == 1

  # Multi-scale: same files, same sizes, ids still classes.
  ms = predict.write_predictions(
    config, str(tmp_path / "run"), str(tmp_path / "ms"), split="val", scales=(0.5, 1.0)
  )
  for image_id in ms["ids"]:
    with Image.open(tmp_path / "ms" / f"{image_id}.png") as im:
      assert im.size == (64, 64) and np.asarray(im).max() < config.task.num_classes
  with pytest.raises(ValueError, match="--save_npy does not apply"):
    predict.write_predictions(config, str(tmp_path / "run"), str(out), save_npy=True)
  with pytest.raises(ValueError, match="write_edge_maps writes edge maps"):
    predict.write_edge_maps(config, str(tmp_path / "run"), str(out))


@pytest.mark.slow
def test_normals_pngs_and_npy_encode_the_decoded_normals(tmp_path):
  config = _tiny("normals")
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  out = tmp_path / "out"
  written = predict.write_predictions(
    config, str(tmp_path / "run"), str(out), split="val", save_npy=True
  )
  source = registry.get_source(config.dataset.name, "val", config.dataset)
  assert len(written["files"]) == 2 * len(source)
  for i, image_id in enumerate(written["ids"]):
    with Image.open(out / f"{image_id}.png") as im:
      assert im.mode == "RGB"
      rgb = np.asarray(im)
    saved = np.load(out / f"{image_id}.npy")
    assert saved.dtype == np.float32 and saved.shape == (64, 64, 3)
    dense = _dense(config, summary["state"], source[i]["image"])
    np.testing.assert_allclose(saved, np.asarray(normals_task.unit(dense)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(saved, axis=-1), 1.0, atol=1e-5)
    assert np.max(np.abs(nyuv2.png_normals(rgb) - saved)) <= 1 / 127.5
    assert rgb.reshape(-1, 3).std(0).max() > 0  # a map, not a constant

  # Without --save_npy: PNGs only.
  plain = predict.write_predictions(config, str(tmp_path / "run"), str(tmp_path / "plain"))
  assert all(f.endswith(".png") for f in plain["files"])


def test_cli_flag_errors_exit_2_with_the_reason(tmp_path):
  """Bad options fail before any checkpoint is looked for."""
  script = os.path.join(os.path.dirname(sys.executable), "pixelnet-predict")
  common = [f"--workdir={tmp_path / 'none'}", f"--out_dir={tmp_path / 'png'}"]
  runs = {
    "npy": [f"--config={TINY}:segmentation", "--save_npy"],
    "scales": [f"--config={TINY}:normals", "--scales=0.5,x"],
    "split": [f"--config={TINY}:normals", "--split=nope"],
    "limit": [f"--config={TINY}:edges", "--limit=0"],
  }
  procs = {
    name: subprocess.Popen(
      [script, *args, *common], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for name, args in runs.items()
  }
  errors = {}
  for name, proc in procs.items():
    errors[name] = proc.communicate(timeout=120)[1]
    assert proc.returncode == 2, (name, errors[name][-2000:])
    assert "Traceback" not in errors[name] and "No checkpoint" not in errors[name]
  assert "--save_npy does not apply to task 'segmentation'" in errors["npy"]
  assert "scales must be numbers" in errors["scales"]
  assert "nope" in errors["split"]
  assert "limit must be >= 1, got 0" in errors["limit"]
