"""Independent computations that tests compare the framework against (NumPy, unchunked)."""

import copy

import jax.numpy as jnp
import numpy as np

from pixelnet_jax import models


def log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def every_pixel_outputs(model_config, num_outputs: int, state, images, crop):
  """The model's train-mode outputs at every pixel of each image as one unchunked call:
  [B, H * W, K] float64, pixels row-major; batch statistics over all of those pixels."""
  model_config = copy.deepcopy(model_config)
  model_config.dense_chunk_size = 10**6
  model = models.create_model(model_config, num_outputs)
  rows, cols = np.meshgrid(np.arange(crop[0]), np.arange(crop[1]), indexing="ij")
  points = np.stack([rows.ravel(), cols.ravel()], -1).astype(np.float32)
  outputs, _ = model.apply(
    {"params": state.params, "batch_stats": state.batch_stats},
    jnp.asarray(images),
    jnp.asarray(np.broadcast_to(points, (len(images), *points.shape))),
    train=True,
    mutable=["batch_stats"],
  )
  return np.asarray(outputs, np.float64)
