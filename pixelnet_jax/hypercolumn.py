"""Hypercolumn reads: features of several conv layers, bilinearly read at pixels.

A layer of stride ``s`` has its cell ``i`` centred on input coordinate
``(i + 0.5) * s - 0.5`` (half-pixel centres), so input coordinate ``x`` maps to
``t = (x + 0.5) / s - 0.5`` on the layer. ``t`` is clamped to ``[0, size - 1]`` on
both axes and read by bilinear interpolation of its four neighbours. At integer
pixels this equals ``jax.image.resize(feature_map, (H, W, C), "linear")``; points
outside the image are thus clamped to its border.

All functions here are pure, work on one image and batch with ``jax.vmap``;
gradients flow into every feature map (the read is a weighted gather, whose
transpose is a scatter-add).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

Stride = float | int | tuple[float, float] | Sequence[float]


def _check_points(points, name: str = "points"):
  if points.ndim != 2 or points.shape[-1] != 2:
    raise ValueError(
      f"`{name}` must have shape [N, 2] as (row, col) for one image, got "
      f"{tuple(points.shape)}; batch images with jax.vmap."
    )
  if not (jnp.issubdtype(points.dtype, jnp.floating) or jnp.issubdtype(points.dtype, jnp.integer)):
    raise TypeError(f"`{name}` must be a float or integer array, got {points.dtype}.")


def _check_feature_map(feature_map, name: str = "feature_map"):
  if feature_map.ndim != 3:
    raise ValueError(
      f"`{name}` must have shape [h, w, C] for one image, got {tuple(feature_map.shape)}; "
      "batch images with jax.vmap."
    )
  if not jnp.issubdtype(feature_map.dtype, jnp.floating):
    raise TypeError(f"`{name}` must be a float array, got {feature_map.dtype}.")


def _stride_pair(stride: Stride) -> tuple[float, float]:
  s = np.asarray(stride, dtype=np.float64).reshape(-1)
  if s.size == 1:
    s = np.repeat(s, 2)
  if s.size != 2 or not np.all(s > 0):
    raise ValueError(f"`stride` must be a positive number or a (row, col) pair, got {stride!r}.")
  return float(s[0]), float(s[1])


def _axis_taps(x, stride: float, size: int):
  """Lower/upper cell index and upper weight along one axis. x: [N] float32."""
  # Same float32 arithmetic as jax.image.resize: multiply by the reciprocal scale.
  inv_stride = np.float32(1.0 / stride)
  t = (x + 0.5) * inv_stride - 0.5
  t = jnp.clip(t, 0.0, size - 1)
  lo = jnp.floor(t)
  w_hi = t - lo
  lo = lo.astype(jnp.int32)
  hi = jnp.minimum(lo + 1, size - 1)
  return lo, hi, w_hi


def bilinear_read(feature_map, points, stride: Stride):
  """Reads a feature map at input-pixel coordinates by bilinear interpolation.

  Args:
    feature_map: [h, w, C] float, a layer of the network for one image.
    points: [N, 2] float (row, col) in input-pixel units (integers allowed).
    stride: the layer's stride in input pixels: a number, or a (row, col) pair
      (need not be an integer, e.g. ``H / h`` for sizes strides do not divide).

  Returns:
    [N, C] in the feature map's dtype.
  """
  _check_feature_map(feature_map)
  _check_points(points)
  s_row, s_col = _stride_pair(stride)
  h, w, c = feature_map.shape
  points = points.astype(jnp.float32)
  r0, r1, wr = _axis_taps(points[:, 0], s_row, h)
  c0, c1, wc = _axis_taps(points[:, 1], s_col, w)
  flat = feature_map.reshape(h * w, c)

  def take(r, cc):
    return jnp.take(flat, r * w + cc, axis=0).astype(jnp.float32)

  wr = wr[:, None]
  wc = wc[:, None]
  top = take(r0, c0) * (1.0 - wc) + take(r0, c1) * wc
  bottom = take(r1, c0) * (1.0 - wc) + take(r1, c1) * wc
  out = top * (1.0 - wr) + bottom * wr
  return out.astype(feature_map.dtype)


def map_strides(feature_maps, image_size) -> tuple[tuple[float, float], ...]:
  """Per-map (row, col) strides, ``(H / h, W / w)``, from static shapes."""
  if len(image_size) != 2:
    raise ValueError(f"`image_size` must be (H, W), got {image_size!r}.")
  height, width = (int(v) for v in image_size)
  if height < 1 or width < 1:
    raise ValueError(f"`image_size` must be positive, got {image_size!r}.")
  strides = []
  for i, fm in enumerate(feature_maps):
    _check_feature_map(fm, f"feature_maps[{i}]")
    strides.append((height / fm.shape[0], width / fm.shape[1]))
  return tuple(strides)


def hypercolumn(feature_maps, points, image_size):
  """Concatenates the bilinear reads of several layers at the same points.

  Args:
    feature_maps: sequence of M arrays [h_i, w_i, C_i] float for one image.
    points: [N, 2] float (row, col) in input-pixel units.
    image_size: (H, W) of the input image; map i's stride per axis is
      ``(H / h_i, W / w_i)``.

  Returns:
    [N, sum_i C_i], maps in the given order.
  """
  feature_maps = list(feature_maps)
  if not feature_maps:
    raise ValueError("`feature_maps` must hold at least one [h, w, C] map.")
  strides = map_strides(feature_maps, image_size)
  reads = [bilinear_read(fm, points, s) for fm, s in zip(feature_maps, strides)]
  dtype = jnp.result_type(*[r.dtype for r in reads])
  return jnp.concatenate([r.astype(dtype) for r in reads], axis=-1)
