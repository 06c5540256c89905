"""Surface normals: 3 outputs per pixel, L2-normalised, scored by angular error.

Labels: ``normals`` [H, W, 3] float unit vectors and ``normals_valid`` [H, W] bool
(pixels with depth). Only valid pixels are sampled and scored.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pixelnet_jax.data.pipeline import LabelSpec
from pixelnet_jax.metrics import normals as normal_metrics
from pixelnet_jax.tasks import base

# Squared-norm floor of the renormalisation: keeps zero vectors (and their gradient) finite.
_SQ_NORM_FLOOR = 1e-12


def default_config() -> dict[str, Any]:
  # 'uniform' (the paper) | 'grid'.
  return dict(base.common_config())


def unit(vectors):
  """Renormalises [..., 3] in float32; a zero vector stays zero (finite gradient)."""
  vectors = vectors.astype(jnp.float32)
  sq_norm = jnp.sum(jnp.square(vectors), axis=-1, keepdims=True)
  return vectors * jax.lax.rsqrt(jnp.maximum(sq_norm, _SQ_NORM_FLOOR))


def mirror_normals(normals: np.ndarray) -> np.ndarray:
  """Normals of a left-right mirrored image: the image-right (x) component changes sign.

  The project's convention: camera coordinates, x right, y down, z towards the camera.
  """
  return normals * np.array([-1, 1, 1], normals.dtype)


def turn_normals(normals: np.ndarray, k: int) -> np.ndarray:
  """Normals of an image turned by k quarter turns (`np.rot90`, image-right to the top):
  each turn maps (x, y, z) to (y, -x, z) in the same camera convention."""
  out = normals
  for _ in range(int(k) % 4):
    out = np.stack([out[..., 1], -out[..., 0], out[..., 2]], axis=-1)
  return out


@base.TASKS.register("normals", defaults=default_config())
class NormalsTask(base.Task):
  """Squared error of the L2-normalised prediction to the unit target, = 2 (1 - cos)."""

  name = "normals"
  num_outputs = 3
  label_keys = ("normals", "normals_valid")
  main_metric = "mean"
  main_metric_mode = "min"
  lower_is_better = ("mean", "median", "rmse")

  def label_specs(self):
    return {
      "normals": LabelSpec(0.0, hflip=mirror_normals, rot90=turn_normals),
      "normals_valid": LabelSpec(False),
    }

  def sampleable(self, labels):
    return labels["normals_valid"].astype(jnp.bool_)

  def gather_targets(self, labels, coords):
    """[N, 3] float32 unit normals."""
    return unit(base.gather(labels["normals"], coords))

  def point_losses(self, outputs, targets, mask):
    del mask  # Every point's value is finite; masking happens in the mean.
    return jnp.sum(jnp.square(unit(outputs) - unit(targets)), axis=-1)

  def decode(self, dense_outputs):
    """[..., H, W, 3] -> [..., H, W, 3] float32 unit normals."""
    return unit(dense_outputs)

  def check_labels(self, labels):
    spatial = base.check_map(labels, "normals", trailing=(3,), kinds="f")
    base.check_map(labels, "normals_valid", kinds="b")
    base.check_same_shape(labels, "normals_valid", spatial)
    valid_normals = labels["normals"][labels["normals_valid"]]
    if not np.all(np.isfinite(valid_normals)):
      raise ValueError(
        "labels['normals'] has non-finite values at pixels where "
        "labels['normals_valid'] is true; mark those pixels invalid."
      )
    return spatial

  def prediction_shape(self, labels):
    return labels["normals"].shape

  def metric_zero(self):
    return {"errors": []}

  def metric_stats(self, prediction, labels, valid: np.ndarray | None):
    mask = labels["normals_valid"]
    if valid is not None:
      mask = mask & valid
    # float32 storage: a split's pooled errors can be 10^8 values.
    errors = normal_metrics.angular_errors(prediction, labels["normals"], mask)
    return {"errors": [errors.astype(np.float32)]}

  def metric_result(self, state):
    return normal_metrics.scores(state["errors"])
