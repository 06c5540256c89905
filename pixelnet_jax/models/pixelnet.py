"""PixelNet: a VGG trunk, hypercolumn reads at sampled pixels, a per-pixel head.

Training reads the taps only at the sampled points (``__call__``); test time is
dense (``predict_dense``): the trunk runs once and the head runs over chunks of
pixels, so a 4096-wide MLP over a whole image never holds every pixel's
hypercolumn at once.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixelnet_jax import hypercolumn
from pixelnet_jax.models import heads as heads_lib
from pixelnet_jax.models import vgg

HEADS = ("mlp", "linear")


def read_taps(maps, spec: vgg.VGGSpec, taps, points, points_batched: bool = True):
  """Bilinear reads of every tap at the points, batched over images.

  A tap after ``k`` pools has stride exactly ``2**k``: with 'SAME' convs and
  ceil-mode pools its cell ``i`` is centred on input pixel ``(i + 0.5) * 2**k - 0.5``
  whatever the image size. (``H / h`` equals ``2**k`` only when ``2**k`` divides
  ``H``; for other sizes it would shift reads by up to a cell at the far border.)

  Args:
    maps: {tap: [B, h, w, C]} from the trunk.
    spec: the trunk's architecture, which gives each tap's number of pools.
    taps: tap names, in the head's order.
    points: [B, N, 2] (points_batched) or [N, 2] shared by all images, float (row, col).
    points_batched: whether points has a leading batch axis.

  Returns:
    list of [B, N, C_tap].
  """
  read = jax.vmap(hypercolumn.bilinear_read, in_axes=(0, 0 if points_batched else None, None))
  return [read(maps[t], points, float(2 ** spec.tap_num_pools(t))) for t in taps]


def _pixel_grid(height: int, width: int):
  """Every pixel's (row, col), row-major: [H * W, 2] float32."""
  rows, cols = jnp.meshgrid(
    jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
  )
  return jnp.stack([rows.reshape(-1), cols.reshape(-1)], axis=-1)


class PixelNet(nn.Module):
  """Hypercolumn pixel predictor. Build it with ``models.create_model``.

  Attributes:
    spec: trunk architecture (vgg.VGGSpec).
    taps: layers read into the hypercolumn, in order.
    num_outputs: K, outputs per pixel.
    tap_activation: 'post' (after ReLU) or 'pre' (after BatchNorm, before ReLU).
    head_type: 'mlp' or 'linear' (config field ``head``); the submodule is ``head``.
    mlp_widths: hidden widths of the MLP head.
    dropout: dropout after each hidden layer of the MLP head.
    hypercolumn_dropout: dropout on the hypercolumn (0 disables).
    head_init_std, trunk_init_std: std of the normal kernel inits.
    conv_bias: conv bias before each BatchNorm in the trunk.
    bn_momentum, bn_epsilon: BatchNorm settings (trunk and linear head).
    bn_axis_name: axis BatchNorm averages statistics over (``'batch'`` under pmap).
    dense_chunk_size: pixels per image per head call in ``predict_dense``.
    dtype: compute dtype; outputs are float32.
  """

  spec: vgg.VGGSpec
  taps: tuple[str, ...]
  num_outputs: int
  tap_activation: str = "post"
  head_type: str = "mlp"
  mlp_widths: tuple[int, ...] = (4096, 4096)
  dropout: float = 0.5
  hypercolumn_dropout: float = 0.0
  head_init_std: float = 0.001
  trunk_init_std: float = 0.01
  conv_bias: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  bn_axis_name: str | None = None
  dense_chunk_size: int = 8192
  dtype: Any = jnp.float32

  def setup(self):
    if self.head_type not in HEADS:
      raise ValueError(f"model.head must be one of {HEADS}, got {self.head_type!r}.")
    self.spec.check_taps(self.taps)
    self.trunk = vgg.VGG(
      spec=self.spec,
      taps=tuple(self.taps),
      tap_activation=self.tap_activation,
      init_std=self.trunk_init_std,
      use_bias=self.conv_bias,
      bn_momentum=self.bn_momentum,
      bn_epsilon=self.bn_epsilon,
      bn_axis_name=self.bn_axis_name,
      dtype=self.dtype,
    )
    if self.head_type == "mlp":
      self.head = heads_lib.MLPHead(
        tap_names=tuple(self.taps),
        num_outputs=self.num_outputs,
        widths=tuple(self.mlp_widths),
        dropout=self.dropout,
        hypercolumn_dropout=self.hypercolumn_dropout,
        init_std=self.head_init_std,
        dtype=self.dtype,
      )
    else:
      self.head = heads_lib.LinearHead(
        tap_names=tuple(self.taps),
        num_outputs=self.num_outputs,
        hypercolumn_dropout=self.hypercolumn_dropout,
        init_std=self.head_init_std,
        bn_momentum=self.bn_momentum,
        bn_epsilon=self.bn_epsilon,
        bn_axis_name=self.bn_axis_name,
        dtype=self.dtype,
      )

  def __call__(self, images, points, train: bool = False):
    """Predicts at sampled pixels.

    Args:
      images: [B, H, W, 3] float32, normalised.
      points: [B, N, 2] float (row, col) in pixels; integers read exact pixels.
      train: batch statistics and dropout on (then pass ``mutable=['batch_stats']``
        and ``rngs={'dropout': key}``).

    Returns:
      [B, N, K] float32.
    """
    _check_images(images)
    if points.ndim != 3 or points.shape[-1] != 2 or points.shape[0] != images.shape[0]:
      raise ValueError(
        f"points must be [B, N, 2] (row, col) with B = {images.shape[0]} as in images, "
        f"got {tuple(points.shape)}."
      )
    maps = self.trunk(images, train=train)
    features = read_taps(maps, self.spec, self.taps, points)
    return self.head(features, train=train)

  def predict_dense(self, images, chunk_size: int | None = None):
    """Predicts every pixel (eval mode): the trunk once, the head over pixel chunks.

    The pixels are split into chunks of ``chunk_size`` per image (the last one
    padded, then cropped) and ``jax.lax.map`` runs the reads and the head chunk
    after chunk, so peak memory holds one chunk's hypercolumns and hidden
    activations, ``B * chunk_size`` rows, instead of all ``B * H * W``.

    Args:
      images: [B, H, W, 3] float32, normalised.
      chunk_size: pixels per image per chunk (default ``dense_chunk_size``).

    Returns:
      [B, H, W, K] float32.
    """
    _check_images(images)
    chunk_size = int(self.dense_chunk_size if chunk_size is None else chunk_size)
    if chunk_size < 1:
      raise ValueError(f"chunk_size (model.dense_chunk_size) must be >= 1, got {chunk_size}.")
    batch, height, width, _ = images.shape
    num_pixels = height * width
    chunk_size = min(chunk_size, num_pixels)
    num_chunks = -(-num_pixels // chunk_size)
    grid = _pixel_grid(height, width)
    grid = jnp.pad(grid, ((0, num_chunks * chunk_size - num_pixels), (0, 0)))
    chunks = grid.reshape(num_chunks, chunk_size, 2)
    maps = self.trunk(images, train=False)
    # The head runs inside lax.map as a pure function of its variables.
    head_def, head_vars = self.head.unbind()

    def head_on_chunk(points):
      features = read_taps(maps, self.spec, self.taps, points, points_batched=False)
      return head_def.apply(head_vars, features, train=False)  # [B, chunk, K]

    out = jax.lax.map(head_on_chunk, chunks)  # [num_chunks, B, chunk, K]
    out = jnp.moveaxis(out, 0, 1).reshape(batch, num_chunks * chunk_size, -1)
    return out[:, :num_pixels].reshape(batch, height, width, -1)

  def feature_maps(self, images, train: bool = False):
    """The trunk's taps: images [B, H, W, 3] -> {tap: [B, h, w, C]}."""
    _check_images(images)
    return self.trunk(images, train=train)


def _check_images(images):
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [B, H, W, 3], got {tuple(images.shape)}.")
