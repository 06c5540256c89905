"""Training and scoring at another scale: ``augment.scale_range`` reaches the data stream,
``eval.scale`` predicts on resized images and scores at the labels' size, and the eval
writes per-class details beside the scalars."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_config

from pixelnet_jax import config_base, evaluate, models, tasks, train
from pixelnet_jax.data import pipeline
from pixelnet_jax.errors import ConfigError
from pixelnet_jax.metrics import segmentation as seg_metrics
from pixelnet_jax.models import PixelNet


def _model_and_variables():
  config = tiny_config.get_config()
  model = models.create_model(config.model, 10)
  images = jax.random.normal(jax.random.key(0), (2, 40, 56, 3))
  variables = model.init(jax.random.key(1), images, jnp.zeros((2, 4, 2)), train=False)
  return model, variables, images


def test_dense_predictor_scale_one_is_plain_dense_prediction():
  model, variables, images = _model_and_variables()
  direct = model.apply(variables, images, method=PixelNet.predict_dense, chunk_size=512)
  scaled = evaluate.dense_predictor(model, 512, scale=1.0)(variables, images)
  np.testing.assert_array_equal(np.asarray(scaled), np.asarray(direct))


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_dense_predictor_scale_resizes_images_then_outputs(scale):
  model, variables, images = _model_and_variables()
  out = evaluate.dense_predictor(model, 512, scale=scale)(variables, images)
  assert out.shape == (2, 40, 56, 10)
  # The same composition spelled out, step by step, outside jit.
  size = (round(40 * scale), round(56 * scale))
  small = jax.image.resize(images, (2, *size, 3), "linear")
  dense = model.apply(variables, small, method=PixelNet.predict_dense, chunk_size=512)
  expected = jax.image.resize(dense, (2, 40, 56, 10), "linear")
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-4, atol=1e-4)
  # And it differs from predicting at scale 1 (the option does something).
  plain = np.asarray(evaluate.dense_predictor(model, 512)(variables, images))
  assert np.abs(np.asarray(out) - plain).max() > 1e-2 * np.abs(plain).max()


def test_dense_predictor_rejects_a_non_positive_scale():
  model, _, _ = _model_and_variables()
  with pytest.raises(ValueError, match="scale must be > 0"):
    evaluate.dense_predictor(model, 512, scale=0.0)


@pytest.mark.parametrize("bad", [(0.0, 1.0), (1.0, 0.5), (-1.0, 2.0)])
def test_bad_scale_range_is_a_config_error(bad):
  config = tiny_config.get_config()
  config.augment.scale_range = bad
  with pytest.raises(ConfigError, match=r"config\.augment\.scale_range"):
    config_base.validate_config(config, 1)


@pytest.mark.parametrize("key", ["scale_range", "gain_range"])
def test_augment_ranges_from_the_command_line(key):
  """'()' turns a range off; 'None' (parsed by ml_collections as (None,)) says how to."""
  config = tiny_config.get_config()
  config.augment[key] = ()
  config_base.validate_config(config, 1)
  config.augment[key] = (None,)
  with pytest.raises(ConfigError, match=rf"--config\.augment\.{key}='\(\)'"):
    config_base.validate_config(config, 1)
  config.augment[key] = (2.0, 1.0)
  with pytest.raises(ConfigError, match=rf"config\.augment\.{key}: {key} must be"):
    config_base.validate_config(config, 1)


def test_bad_eval_scale_is_a_config_error():
  config = tiny_config.get_config()
  config.eval.scale = 0.0
  with pytest.raises(ConfigError, match=r"config\.eval\.scale"):
    config_base.validate_config(config, 1)


def test_a_field_added_later_with_default_none_is_no_drift():
  old = {"augment": {"flip": True}, "crop_size": 64}
  assert config_base.config_drift(old, {"augment": {"flip": True, "scale_range": None}}) == [
    ("crop_size", 64, "<absent>")
  ]
  assert config_base.config_drift(old, {**old, "augment": {"flip": True, "scale_range": [1, 2]}})


def test_training_passes_scale_range_and_scores_at_label_size(tmp_path, monkeypatch):
  seen = {}
  make = pipeline.make_train_iterator

  def spy(*args, **kwargs):
    seen["scale_range"] = kwargs.get("scale_range")
    return make(*args, **kwargs)

  monkeypatch.setattr(pipeline, "make_train_iterator", spy)
  config = tiny_config.get_config()
  config.augment.scale_range = (0.75, 1.25)
  config.eval.scale = 0.5
  config.num_train_steps = 2
  config.eval_every = 2
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert seen["scale_range"] == (0.75, 1.25)
  assert 0.0 <= summary["eval"]["miou"] <= 1.0
  # Per-class details beside the scalars, consistent with them.
  with open(os.path.join(tmp_path, "eval", "val_step0000002.json")) as f:
    details = json.load(f)
  confusion = np.asarray(details["confusion"])
  assert confusion.shape == (10, 10)
  # Scored at the labels' size: every labelled pixel of the 4 val images is counted once.
  assert confusion.sum() == 4 * 64 * 64
  scores = seg_metrics.scores(confusion)
  assert details["miou"] == pytest.approx(summary["eval"]["miou"])
  assert details["miou"] == pytest.approx(scores["miou"])
  iou = np.array([np.nan if v is None else v for v in details["iou"]])
  np.testing.assert_allclose(iou, scores["iou"])


def test_segmentation_details_match_the_scores():
  task = tasks.get_task("segmentation", tasks.default_task_config("segmentation"))
  rng = np.random.default_rng(0)
  labels = {"label": rng.integers(0, 21, (2, 16, 16)).astype(np.int32)}
  labels["label"][0, :4] = 255
  prediction = rng.integers(0, 21, (2, 16, 16)).astype(np.int32)
  state = task.metric_update(task.metric_init(), prediction, labels)
  details = task.metric_details(state)
  direct = seg_metrics.confusion_matrix(prediction, labels["label"], 21, 255)
  np.testing.assert_array_equal(np.asarray(details["confusion"]), direct)
  assert len(details["iou"]) == len(details["accuracy"]) == 21
  json.dumps(details)  # JSON-ready
