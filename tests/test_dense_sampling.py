"""The dense baseline: config.task.sampling='dense' trains on every valid pixel of each crop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_config

from pixelnet_jax import config_base, models, parallel
from pixelnet_jax.data import pipeline, registry
from pixelnet_jax.errors import ConfigError
from pixelnet_jax.state import create_train_state


def _log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_dense_loss_is_the_mean_of_every_valid_pixels_loss():
  c = tiny_config.get_config("segmentation")
  c.task.sampling = "dense"
  c.points_per_image = 10**6  # ignored in dense mode
  c.batch_size = 2
  c.model.heads.mlp.dropout = 0.0
  c.model.dense_chunk_size = 1000  # 64 * 64 = 4096 pixels: 5 chunks, the last one padded
  task, crop = config_base.validate_config(c, 1)
  model = models.create_model(c.model, task.num_outputs)
  state = create_train_state(c, model, jax.random.key(0), crop)
  batches = pipeline.make_train_iterator(
    registry.get_source("procedural", "train", c.dataset), 2, crop, 0,
    label_keys=task.label_keys, label_specs=task.label_specs(),
  )  # fmt: skip
  batch = next(batches)
  batches.close()
  batch["valid"][0, :10] = False  # some pixels outside the crop's valid region
  batch["label"][1, 20:30, 5:9] = task.ignore_label  # and some without a label

  # Independent: the unchunked model at every pixel as a point, NumPy cross-entropy.
  c_ref = tiny_config.get_config("segmentation")
  c_ref.model.heads.mlp.dropout = 0.0
  c_ref.model.dense_chunk_size = 10**6
  reference = models.create_model(c_ref.model, task.num_outputs)
  rows, cols = np.meshgrid(np.arange(crop[0]), np.arange(crop[1]), indexing="ij")
  points = np.stack([rows.ravel(), cols.ravel()], -1).astype(np.float32)
  outputs, _ = reference.apply(
    {"params": state.params, "batch_stats": state.batch_stats},
    jnp.asarray(batch["image"]),
    jnp.asarray(np.broadcast_to(points, (2, *points.shape))),
    train=True,
    mutable=["batch_stats"],
  )
  outputs = np.asarray(outputs, np.float64).reshape(2, crop[0], crop[1], -1)
  labels = batch["label"]
  valid = batch["valid"] & (labels != task.ignore_label)
  picked = np.take_along_axis(
    _log_softmax(outputs), np.where(valid, labels, 0)[..., None].astype(int), axis=-1
  )[..., 0]
  expected = -picked[valid].mean()

  # The chunked head (jax.checkpoint inside lax.map) has the unchunked gradients.
  all_points = jnp.asarray(np.broadcast_to(points, (2, *points.shape)))
  coords = all_points.astype(jnp.int32)
  labels_j = {k: jnp.asarray(v) for k, v in task.select_labels(batch).items()}
  targets = jax.vmap(task.gather_targets)(labels_j, coords)
  mask = jnp.asarray(valid.reshape(2, -1))

  def grads(m):
    def loss(params):
      out, _ = m.apply(
        {"params": params, "batch_stats": state.batch_stats},
        jnp.asarray(batch["image"]),
        all_points,
        train=True,
        mutable=["batch_stats"],
      )
      return task.loss(out, targets, mask)

    return jax.jit(jax.grad(loss))(state.params)

  g_chunked, g_ref = grads(model), grads(reference)
  scale = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(g_ref))))
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(g_chunked), jax.tree.leaves(g_ref), strict=True
  ):
    err = float(jnp.linalg.norm(a - b))
    assert err <= 1e-4 * float(jnp.linalg.norm(b)) + 1e-6 * scale, jax.tree_util.keystr(path)

  # The train step, on one device (pmap) and over two (mesh: one image per shard).
  step_model = models.create_model(c.model, task.num_outputs, bn_axis_name=parallel.AXIS)
  for kind, devices in (("pmap", 1), ("mesh", 2)):
    c.parallel, c.num_devices = kind, devices
    step_fn = parallel.ParallelStep(c, step_model, task, parallel.select_devices(c))
    _, metrics = step_fn(step_fn.put_state(jax.tree.map(jnp.copy, state)), batch)  # donated
    np.testing.assert_allclose(float(metrics["loss"]), expected, rtol=1e-5, err_msg=kind)
    np.testing.assert_allclose(float(metrics["sampled_fraction"]), valid.mean(), rtol=1e-6)


def test_dense_sampling_refuses_crops_above_the_limit():
  c = tiny_config.get_config("segmentation")
  c.task.sampling = "dense"
  c.crop_size = 513
  with pytest.raises(ConfigError, match=r"262144 pixels per crop \(512x512\)"):
    config_base.validate_config(c, 1)
  c.crop_size = 512
  assert config_base.validate_config(c, 1)[1] == (512, 512)
