"""Pictures of predictions: label, normals and probability maps as RGB, panels, points."""

from __future__ import annotations

import numpy as np

from pixelnet_jax.data import pipeline

# A fixed palette for class maps (class i -> colour i mod len); ignore -> black.
_PALETTE = np.array(
  [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [220, 190, 255],
    [170, 110, 40],
    [255, 250, 200],
    [128, 0, 0],
    [170, 255, 195],
    [128, 128, 0],
    [255, 215, 180],
    [0, 0, 128],
    [128, 128, 128],
    [255, 255, 255],
  ],
  np.uint8,
)


def to_rgb(array: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
  """A label, normals or probability map as an [H, W, 3] uint8 picture.

  int [H, W]: class colours (ids outside the palette's use, e.g. 255, black);
  float [H, W, 3]: normals as (n + 1) / 2; float [H, W]: grey levels of [0, 1].
  """
  array = np.asarray(array)
  if np.issubdtype(array.dtype, np.integer) and array.ndim == 2:
    rgb = _PALETTE[np.mod(array, len(_PALETTE))]
    rgb[(array < 0) | (array >= 255)] = 0
  elif array.ndim == 3 and array.shape[-1] == 3:
    rgb = (np.clip((array + 1.0) / 2.0, 0, 1) * 255).astype(np.uint8)
  elif array.ndim == 2:
    rgb = np.repeat((np.clip(array, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)
  else:
    raise ValueError(f"Cannot draw an array of shape {array.shape} and dtype {array.dtype}.")
  if valid is not None:
    rgb = np.where(np.asarray(valid)[..., None], rgb, 0).astype(np.uint8)
  return rgb


def display_image(image: np.ndarray) -> np.ndarray:
  """Undoes ``pipeline.normalize_image``: [H, W, 3] float32 -> uint8."""
  rgb = (np.asarray(image) * pipeline.IMAGE_STD + pipeline.IMAGE_MEAN) * 255.0
  return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def draw_points(image: np.ndarray, coords: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Marks sampled pixels (red) on a copy of ``image`` [H, W, 3] uint8."""
  out = (np.asarray(image) // 2).astype(np.uint8)
  coords = np.asarray(coords)[np.asarray(mask)]
  out[coords[:, 0], coords[:, 1]] = [255, 32, 32]
  return out


def panel(*pictures: np.ndarray, gap: int = 4, min_height: int = 192) -> np.ndarray:
  """Pictures side by side with a white gap; small ones enlarged (nearest) to be seen."""
  scale = max(1, min_height // max(p.shape[0] for p in pictures))
  pictures = [np.repeat(np.repeat(p, scale, axis=0), scale, axis=1) for p in pictures]
  height = max(p.shape[0] for p in pictures)
  parts = []
  for p in pictures:
    pad = np.zeros((height, p.shape[1], 3), np.uint8)
    pad[: p.shape[0]] = p
    parts += [pad, np.full((height, gap, 3), 255, np.uint8)]
  return np.concatenate(parts[:-1], axis=1)
