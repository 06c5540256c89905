"""The switches of the sampling analysis: hard-pixel mining in the step, the linear head
without normalisation, the trunk without BatchNorm, and resuming across added fields."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference
import tiny_config

from pixelnet_jax import config_base, models, parallel, sampling, tasks
from pixelnet_jax.data import pipeline, registry
from pixelnet_jax.state import create_train_state


def _first_batch(c, task, crop):
  batches = pipeline.make_train_iterator(
    registry.get_source("procedural", "train", c.dataset), int(c.batch_size), crop, 0,
    label_keys=task.label_keys, label_specs=task.label_specs(),
  )  # fmt: skip
  batch = next(batches)
  batches.close()
  return batch


def test_hardest_puts_top_scores_first_then_valid_candidates_in_order():
  scores = jnp.asarray([0.1, 5.0, 0.3, 9.0, 7.0, 0.2, 8.0, 0.0], jnp.float32)
  mask = jnp.asarray([True, True, True, False, True, True, True, True])
  keep = np.asarray(sampling.hardest(scores, mask, 5, importance=0.6))
  # 3 by score among the valid (index 3 is invalid despite its 9.0), then the first others.
  assert keep.tolist() == [6, 4, 1, 0, 2]
  # Fewer valid candidates than points: the invalid ones come last.
  few = jnp.asarray([False, True, False, False, False, False, True, False])
  keep = np.asarray(sampling.hardest(scores, few, 4, importance=0.5))
  assert keep[:2].tolist() == [6, 1] and not np.asarray(few)[keep[2:]].any()
  with pytest.raises(ValueError, match="more than the 8 candidates"):
    sampling.hardest(scores, mask, 9)


def test_hard_sampling_step_takes_the_loss_on_the_hardest_pixels():
  """With every pixel a candidate (oversample x N = H x W) and hard_fraction 1, the step's
  loss is the mean of each image's N largest per-pixel losses, whatever the key."""
  c = tiny_config.get_config("segmentation")
  c.task.sampling = "hard"
  c.task.hard_fraction = 1.0
  c.points_per_image = 64
  c.task.hard_oversample = 64  # 64 x 64 = every pixel of the 64 x 64 crop
  c.batch_size = 2
  c.model.heads.mlp.dropout = 0.0
  c.model.heads.mlp.init_std = 0.3  # outputs far from uniform: the losses differ per pixel
  task, crop = config_base.validate_config(c, 1)
  assert task.num_candidates(64) == crop[0] * crop[1]
  model = models.create_model(c.model, task.num_outputs)
  state = create_train_state(c, model, jax.random.key(0), crop)
  batch = _first_batch(c, task, crop)
  assert batch["valid"].all() and (batch["label"] != task.ignore_label).all()

  # Independent: the unchunked model at every pixel, NumPy cross-entropy, top 64 per image.
  outputs = reference.every_pixel_outputs(c.model, task.num_outputs, state, batch["image"], crop)
  log_p = reference.log_softmax(outputs)
  labels = batch["label"].reshape(2, -1, 1).astype(int)
  losses = -np.take_along_axis(log_p, labels, axis=-1)[..., 0]
  expected = np.sort(losses, axis=-1)[:, -64:].mean()
  assert expected > losses.mean() + 0.5  # the hardest are clearly harder than the average

  step_model = models.create_model(c.model, task.num_outputs, bn_axis_name=parallel.AXIS)
  for kind, devices in (("pmap", 1), ("mesh", 2)):
    c.parallel, c.num_devices = kind, devices
    step_fn = parallel.ParallelStep(c, step_model, task, parallel.select_devices(c))
    _, metrics = step_fn(step_fn.put_state(jax.tree.map(jnp.copy, state)), batch)
    np.testing.assert_allclose(float(metrics["loss"]), expected, rtol=1e-5, err_msg=kind)
    assert float(metrics["sampled_fraction"]) == 1.0


def test_hard_sampling_config_is_validated():
  with pytest.raises(ValueError, match="config.task.hard_fraction must be in"):
    tasks.get_task("segmentation", {"num_classes": 3, "sampling": "hard", "hard_fraction": 2.0})
  with pytest.raises(ValueError, match="config.task.hard_oversample must be an integer"):
    tasks.get_task("edges", {"sampling": "hard", "hard_oversample": 0})


def test_linear_head_without_normalisation_is_relu_then_one_dense_layer():
  c = tiny_config.get_config("segmentation")
  c.model.head = "linear"
  c.model.heads.linear.normalize = False
  model = models.create_model(c.model, 10)
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  points = jax.random.uniform(jax.random.key(2), (2, 7, 2), maxval=31.0)
  variables = model.init(jax.random.key(0), images, points)
  params = models.unbox(variables["params"])
  assert not any("bn_" in k for k in params["head"])  # no per-tap normalisation
  maps = model.apply(variables, images, method=model.feature_maps)
  features = models.pixelnet.read_taps(maps, model.taps, model.tap_strides, points)
  hypercolumn = np.concatenate([np.maximum(np.asarray(f), 0) for f in features], -1)
  first = params["head"]["first"]
  kernel = np.concatenate([np.asarray(first[f"first_{t}"]) for t in model.taps], 0)
  expected = hypercolumn @ kernel + np.asarray(first["first_bias"])
  np.testing.assert_allclose(np.asarray(model.apply(variables, images, points)), expected, 1e-4)


def test_trunk_without_batch_norm_has_no_statistics_and_still_trains():
  c = tiny_config.get_config("segmentation")
  c.model.trunks.vgg.batch_norm = False
  c.model.trunks.vgg.conv_bias = False  # ignored without BatchNorm: the bias stays
  c.model.trunks.vgg.init_std = 0.1
  c.model.head = "linear"
  c.model.heads.linear.normalize = False  # no BatchNorm anywhere: empty batch_stats
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-2
  task, crop = config_base.validate_config(c, 1)
  model = models.create_model(c.model, task.num_outputs, bn_axis_name=parallel.AXIS)
  state = create_train_state(c, model, jax.random.key(0), crop)
  trunk = models.unbox(state.params)["trunk"]
  assert not any(k.endswith("_bn") for k in trunk) and all("bias" in v for v in trunk.values())
  assert not jax.tree.leaves(state.batch_stats)
  batch = _first_batch(c, task, crop)
  step_fn = parallel.ParallelStep(c, model, task, parallel.select_devices(c))
  state = step_fn.put_state(state)
  losses = []
  for _ in range(8):  # the same batch: the loss must fall
    state, metrics = step_fn(state, batch)
    losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0], losses


def test_added_fields_resume_at_the_value_that_reproduces_old_runs():
  old = {"task": {"sampling": "uniform"}, "model": {"trunks": {"vgg": {"init_std": 0.01}}}}
  new = {
    "task": {"sampling": "uniform", "hard_oversample": 3, "hard_fraction": 0.75},
    "model": {"trunks": {"vgg": {"init_std": 0.01, "batch_norm": True}}},
  }
  assert config_base.config_drift(old, new) == []
  new["model"]["trunks"]["vgg"]["batch_norm"] = False
  new["task"]["hard_oversample"] = 5
  assert config_base.config_drift(old, new) == [
    ("model.trunks.vgg.batch_norm", "<absent>", False),
    ("task.hard_oversample", "<absent>", 5),
  ]
