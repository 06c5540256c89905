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


def read_taps(maps, taps, strides, points, points_batched: bool = True):
  """Bilinear reads of every tap at the points, batched over images.

  Each tap is read with its trunk's exact stride (for the VGG family a tap after
  ``k`` pools has stride ``2**k``, its cell ``i`` centred on input pixel
  ``(i + 0.5) * 2**k - 0.5`` whatever the image size; ``H / h`` equals that only
  when ``2**k`` divides ``H``).

  Args:
    maps: {tap: [B, h, w, C]} from the trunk.
    taps: tap names, in the head's order.
    strides: one stride per tap, in input pixels.
    points: [B, N, 2] (points_batched) or [N, 2] shared by all images, float (row, col).
    points_batched: whether points has a leading batch axis.

  Returns:
    list of [B, N, C_tap].
  """
  read = jax.vmap(hypercolumn.bilinear_read, in_axes=(0, 0 if points_batched else None, None))
  return [read(maps[t], points, float(s)) for t, s in zip(taps, strides)]


def _pixel_grid(height: int, width: int):
  """Every pixel's (row, col), row-major: [H * W, 2] float32."""
  rows, cols = jnp.meshgrid(
    jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
  )
  return jnp.stack([rows.reshape(-1), cols.reshape(-1)], axis=-1)


class PixelNet(nn.Module):
  """Hypercolumn pixel predictor. Build it with ``models.create_model``.

  Attributes:
    trunk: module images [B, H, W, 3] -> {tap: [B, h, w, C]} (``__call__(images, train)``).
    head: a ``models.Head``: per-tap features -> [..., K].
    taps: layers read into the hypercolumn, in order.
    tap_strides: each tap's stride in input pixels.
    num_outputs: K, outputs per pixel.
    dense_chunk_size: pixels per image per head call in ``predict_dense``, and in
      ``__call__`` when more points than this are read per image ('dense' sampling).
    spec: the trunk's layer description (``tap_names``, ``tap_stride``), for callers.
    linear_first: apply the head's first-layer projection of the taps of stride
      >= ``linear_first_min_stride`` to their maps before the bilinear read (fewer
      FLOPs when a map has fewer cells than the points read from it; same parameters,
      same outputs up to rounding). Heads without the capability ignore it.
    linear_first_min_stride: the smallest tap stride that takes the linear-first path.
  """

  trunk: nn.Module
  head: nn.Module
  taps: tuple[str, ...]
  tap_strides: tuple[float, ...]
  num_outputs: int
  dense_chunk_size: int = 8192
  spec: Any = None
  linear_first: bool = False
  linear_first_min_stride: float = 8.0

  def _projected(self, train: bool) -> tuple[bool, ...] | None:
    """Per tap, whether it takes the linear-first path here (None: no tap does).

    The head's first-layer projection of a tap of stride >= ``linear_first_min_stride``
    runs on the map before the read (``W . read(c) = read(W . c)``: exact up to
    rounding, same parameters). Not at init (the kernels are made there), nor for a
    head that cannot (``Head.can_project``).
    """
    if not self.linear_first or self.is_initializing():
      return None
    can_project = getattr(self.head, "can_project", None)  # heads outside models.Head
    if can_project is None or not can_project(train):
      return None
    projected = tuple(float(s) >= float(self.linear_first_min_stride) for s in self.tap_strides)
    return projected if any(projected) else None

  def _maps_to_read(self, maps, projected):
    """{tap: map}, the linear-first taps replaced by the head's projection of their map."""
    if projected is None:
      return maps
    return {
      t: self.head.project_map(t, maps[t]) if p else maps[t] for t, p in zip(self.taps, projected)
    }

  def _head(self, head, features, train, projected):
    if projected is None:
      return head(features, train=train)
    return head(features, train=train, projected=projected)

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
    projected = self._projected(train)
    maps = self._maps_to_read(maps, projected)
    if points.shape[1] > self.dense_chunk_size and not self.is_initializing():
      head_vars = self.head.unbind()[1]
      if "batch_stats" not in head_vars:  # chunks must not change batch statistics
        return self._head_over_chunks(maps, points, train, projected)
    features = read_taps(maps, self.taps, self.tap_strides, points)
    return self._head(self.head, features, train, projected)

  def _head_over_chunks(self, maps, points, train, projected):
    """Reads and the head over chunks of ``dense_chunk_size`` points per image.

    For many points per image ('dense' sampling: every pixel of the crop): each chunk
    runs under ``jax.checkpoint`` inside ``lax.map``, so neither pass holds more than one
    chunk's hypercolumns and hidden activations (the backward pass recomputes them).
    Dropout draws a fresh mask per chunk. Heads with batch statistics (BatchNorm in the
    head) are not chunked: per-chunk statistics would change the function.
    """
    batch, num_points, _ = points.shape
    chunk = int(self.dense_chunk_size)
    num_chunks = -(-num_points // chunk)
    padded = jnp.pad(points, ((0, 0), (0, num_chunks * chunk - num_points), (0, 0)))
    chunks = jnp.moveaxis(padded.reshape(batch, num_chunks, chunk, 2), 1, 0)
    key = self.make_rng("dropout") if train and self.has_rng("dropout") else None
    head_def, head_vars = self.head.unbind()

    @jax.checkpoint
    def head_on_chunk(args):
      index, chunk_points = args
      features = read_taps(maps, self.taps, self.tap_strides, chunk_points)
      rngs = {} if key is None else {"rngs": {"dropout": jax.random.fold_in(key, index)}}
      return self._head(
        lambda f, **kw: head_def.apply(head_vars, f, **kw, **rngs), features, train, projected
      )  # [B, chunk, K]

    out = jax.lax.map(head_on_chunk, (jnp.arange(num_chunks), chunks))
    out = jnp.moveaxis(out, 0, 1).reshape(batch, num_chunks * chunk, -1)
    return out[:, :num_points]

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
    # Linear-first taps are projected once, on the whole map, before the chunk loop.
    projected = self._projected(False)
    maps = self._maps_to_read(maps, projected)
    # The head runs inside lax.map as a pure function of its variables.
    head_def, head_vars = self.head.unbind()

    def head_on_chunk(points):
      features = read_taps(maps, self.taps, self.tap_strides, points, points_batched=False)
      return self._head(
        lambda f, **kw: head_def.apply(head_vars, f, **kw), features, False, projected
      )  # [B, chunk, K]

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
