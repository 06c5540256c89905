"""Semantic segmentation: K-way softmax per pixel, scored by mean IoU.

Labels: ``label`` [H, W] int class ids, ``ignore_label`` (255) where unlabelled.
Sampling: 'uniform' over labelled pixels (the paper), 'grid', or
'class_stratified' (equal quotas per class present in the image by default, or
``class_fractions``; an absent class's share goes to the present ones).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from pixelnet_jax import sampling
from pixelnet_jax.data.pipeline import LabelSpec
from pixelnet_jax.metrics import segmentation as seg_metrics
from pixelnet_jax.tasks import base


def default_config() -> dict[str, Any]:
  return dict(
    base.common_config(),
    num_classes=21,
    ignore_label=255,
    # 'uniform' | 'grid' | 'class_stratified'.
    sampling="uniform",
    # For 'class_stratified': None = equal, else one non-negative share per class.
    class_fractions=None,
  )


@base.TASKS.register("segmentation", defaults=default_config())
class SegmentationTask(base.Task):
  """Softmax cross-entropy over the sampled labelled pixels; decode = argmax."""

  name = "segmentation"
  label_keys = ("label",)
  main_metric = "miou"
  main_metric_mode = "max"
  sampling_modes = base.COMMON_SAMPLING + ("class_stratified",)

  def __init__(self, config):
    super().__init__(config)
    self.num_classes = int(config.num_classes)
    if self.num_classes < 2:
      raise ValueError(f"config.task.num_classes must be >= 2, got {config.num_classes!r}.")
    self.num_outputs = self.num_classes
    self.ignore_label = int(config.ignore_label)
    if 0 <= self.ignore_label < self.num_classes:
      raise ValueError(
        f"config.task.ignore_label={self.ignore_label} is a valid class id (num_classes="
        f"{self.num_classes}); use an id outside [0, num_classes), e.g. 255."
      )
    self.class_fractions = None
    if config.class_fractions is not None:
      fractions = np.asarray(config.class_fractions, np.float64).reshape(-1)
      if fractions.shape != (self.num_classes,) or np.any(fractions < 0) or fractions.sum() <= 0:
        raise ValueError(
          f"config.task.class_fractions must be {self.num_classes} non-negative numbers "
          f"(not all zero), got {list(config.class_fractions)}."
        )
      self.class_fractions = tuple(float(f) for f in fractions / fractions.sum())

  def label_specs(self):
    return {"label": LabelSpec(pad_value=self.ignore_label)}

  def sampleable(self, labels):
    return labels["label"] != self.ignore_label

  def sample_task_mode(self, key, labels, num_points):
    # 'class_stratified': strata = class id, -1 where ignored or outside `valid`.
    strata = sampling.class_strata(labels["label"], self.ignore_label)
    strata = jnp.where(self.sample_mask(labels), strata, -1)
    fractions = None if self.class_fractions is None else jnp.asarray(self.class_fractions)
    return sampling.stratified(key, strata, num_points, self.num_classes, fractions)

  def gather_targets(self, labels, coords):
    """[N] int32 class ids."""
    return base.gather(labels["label"], coords).astype(jnp.int32)

  def point_losses(self, outputs, targets, mask):
    # Masked points may carry the ignore label: give them class 0 so the value stays finite.
    targets = jnp.where(mask, targets, 0)
    return optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32), targets)

  def decode(self, dense_outputs):
    """[..., H, W, K] scores -> [..., H, W] int32 class ids."""
    return jnp.argmax(dense_outputs, axis=-1).astype(jnp.int32)

  def check_labels(self, labels):
    spatial = base.check_map(labels, "label", kinds="iu")
    seg_metrics.check_label_ids(
      labels["label"], self.num_classes, self.ignore_label, name="labels['label']"
    )
    return spatial

  def prediction_shape(self, labels):
    return labels["label"].shape

  def metric_zero(self):
    return {"confusion": np.zeros((self.num_classes, self.num_classes), np.int64)}

  def metric_stats(self, prediction, labels, valid: np.ndarray | None):
    return {
      "confusion": seg_metrics.confusion_matrix(
        prediction, labels["label"], self.num_classes, self.ignore_label, valid=valid
      )
    }

  def metric_result(self, state):
    """Scalars; per-class IoU is ``metrics.segmentation.scores(state['confusion'])``."""
    result = seg_metrics.scores(state["confusion"])
    return {k: result[k] for k in ("miou", "pixel_accuracy", "mean_accuracy")}

  def metric_details(self, state):
    """Per-class IoU and recall (None where undefined) and the confusion matrix (rows =
    ground truth, columns = prediction)."""
    result = seg_metrics.scores(state["confusion"])
    per_class = {
      k: [None if np.isnan(v) else float(v) for v in result[k]] for k in ("iou", "accuracy")
    }
    return {**per_class, "confusion": np.asarray(state["confusion"]).tolist()}
