"""Boundary detection: one logit per pixel, sigmoid cross-entropy.

Labels: ``edges`` [H, W] float in [0, 1], the fraction of annotators marking a
boundary at the pixel. Targets fuse the annotators by ``label_fusion``:

- 'threshold': target 1 where ``edges >= label_threshold``, else 0. With
  ``ignore_uncertain`` the pixels some but too few annotators marked
  (0 < edges < label_threshold) are neither sampled nor scored (HED / RCF).
- 'soft': target = ``edges`` itself (cross-entropy with a soft label).

Sampling: 'stratified' (default) draws a ``positive_fraction`` of the points
among positive pixels (``edges >= label_threshold`` for 'threshold' fusion, any
annotator's mark, ``edges > 0``, for 'soft') and the rest among the others;
'uniform' and 'grid' ignore the classes.

Class balancing (``class_balance='sampled'``, HED): within the points passed to
``loss`` (one image when the loss is vmapped, else the whole batch), positives
are weighted by beta = |Y-| / |Y| and negatives by 1 - beta = |Y+| / |Y|, with
|Y+| = sum of targets and |Y-| = sum of (1 - targets) over the valid points (so
soft targets count fractionally). The weighted sum is divided by the number of
valid points, as HED leaves it unnormalised by the weights. Note that the
stratified sampler already sets the sampled share of positives to
``positive_fraction`` = p, so balancing then weighs positives (1 - p) and
negatives p, i.e. by the sampler's fractions; with p = 0.5 it only halves the loss.

Training-time metric: ``f_pixel``, the best F-measure over ``metric_bins``
thresholds with pixel-exact matching of the edge probability to the binarised
ground truth (``edges >= label_threshold``), plus ``ap_pixel`` (area under that
PR curve). It is a cheap proxy; the BSDS protocol (NMS, thinning, matching within
a tolerance per annotator) is ``pixelnet_jax.metrics.boundaries``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pixelnet_jax import sampling
from pixelnet_jax.data.pipeline import LabelSpec
from pixelnet_jax.tasks import base

_FUSIONS = ("threshold", "soft")
_BALANCES = ("none", "sampled")
# 'soft' fusion: a pixel counts as positive for stratification if any annotator marked it.
_SOFT_POSITIVE = 1e-6


def default_config() -> dict[str, Any]:
  return dict(
    base.common_config(),
    # 'stratified' (edge / non-edge quotas) | 'uniform' | 'grid'.
    sampling="stratified",
    positive_fraction=0.5,
    label_fusion="threshold",  # 'threshold' | 'soft'
    label_threshold=0.5,
    ignore_uncertain=False,
    class_balance="none",  # 'none' | 'sampled'
    metric_bins=100,
  )


@base.TASKS.register("edges", defaults=default_config())
class EdgesTask(base.Task):
  """Sigmoid cross-entropy on sampled pixels; decode = edge probability [H, W]."""

  name = "edges"
  num_outputs = 1
  label_keys = ("edges",)
  main_metric = "f_pixel"
  main_metric_mode = "max"
  sampling_modes = base.COMMON_SAMPLING + ("stratified",)

  def __init__(self, config):
    super().__init__(config)
    for field, value, allowed in (
      ("label_fusion", config.label_fusion, _FUSIONS),
      ("class_balance", config.class_balance, _BALANCES),
    ):
      if value not in allowed:
        raise ValueError(f"config.task.{field}={value!r}; choose one of {list(allowed)}.")
    self.threshold = float(config.label_threshold)
    if not 0.0 < self.threshold <= 1.0:
      raise ValueError(f"config.task.label_threshold must be in (0, 1], got {self.threshold}.")
    self.positive_fraction = float(config.positive_fraction)
    sampling.positive_fractions(self.positive_fraction)  # Validates [0, 1].
    self.soft = config.label_fusion == "soft"
    self.ignore_uncertain = bool(config.ignore_uncertain) and not self.soft
    self.num_bins = int(config.metric_bins)
    if self.num_bins < 2:
      raise ValueError(f"config.task.metric_bins must be >= 2, got {config.metric_bins!r}.")

  # -- Labels -----------------------------------------------------------------

  def label_specs(self):
    # Boundaries are 1 pixel wide: scale augmentation must shrink them by max, not
    # nearest, or about 30% of them vanish at scale 0.7.
    return {"edges": LabelSpec(0.0, resize="max")}

  def _known(self, edges):
    """[..., H, W] bool: pixels with a trusted label (all unless ignore_uncertain)."""
    if not self.ignore_uncertain:
      xp = jnp if isinstance(edges, jax.Array) else np
      return xp.ones(edges.shape, bool)
    return (edges <= 0) | (edges >= self.threshold)

  def sampleable(self, labels):
    return jnp.asarray(self._known(labels["edges"]))

  def sample_task_mode(self, key, labels, num_points):
    # 'stratified': 0 non-edge / 1 edge / -1 never.
    cut = _SOFT_POSITIVE if self.soft else self.threshold
    strata = sampling.boundary_strata(labels["edges"], cut, valid=self.sample_mask(labels))
    return sampling.stratified(
      key, strata, num_points, 2, sampling.positive_fractions(self.positive_fraction)
    )

  def gather_targets(self, labels, coords):
    """[N] float32 targets in [0, 1]."""
    edges = base.gather(labels["edges"], coords).astype(jnp.float32)
    return edges if self.soft else (edges >= self.threshold).astype(jnp.float32)

  # -- Loss -------------------------------------------------------------------

  def point_losses(self, outputs, targets, mask):
    logits = outputs[..., 0].astype(jnp.float32)
    targets = targets.astype(jnp.float32)
    pos_weight = neg_weight = 1.0
    if self.config.class_balance == "sampled":
      m = mask.astype(jnp.float32)
      num_pos = jnp.sum(m * targets)
      num_neg = jnp.sum(m * (1.0 - targets))
      beta = jax.lax.stop_gradient(num_neg / jnp.maximum(num_pos + num_neg, 1e-12))
      pos_weight, neg_weight = beta, 1.0 - beta
    return -(
      pos_weight * targets * jax.nn.log_sigmoid(logits)
      + neg_weight * (1.0 - targets) * jax.nn.log_sigmoid(-logits)
    )

  def decode(self, dense_outputs):
    """[..., H, W, 1] logits -> [..., H, W] float32 edge probability."""
    return jax.nn.sigmoid(dense_outputs[..., 0].astype(jnp.float32))

  # -- Host side --------------------------------------------------------------

  def check_labels(self, labels):
    spatial = base.check_map(labels, "edges", kinds="f")
    edges = labels["edges"]
    if not np.all((edges >= 0) & (edges <= 1)):  # Also false for NaN.
      bad = edges[~((edges >= 0) & (edges <= 1))]
      raise ValueError(
        f"labels['edges'] must be annotator fractions in [0, 1], found "
        f"{float(bad[0])}; divide counts by the number of annotators."
      )
    return spatial

  def prediction_shape(self, labels):
    return labels["edges"].shape

  def metric_zero(self):
    zeros = np.zeros((self.num_bins,), np.int64)
    return {"positives": zeros, "negatives": zeros.copy()}

  def metric_stats(self, prediction, labels, valid: np.ndarray | None):
    edges = labels["edges"]
    keep = self._known(edges)
    if valid is not None:
      keep = keep & valid
    bins = np.clip(
      np.floor(prediction.astype(np.float64) * self.num_bins), 0, self.num_bins - 1
    ).astype(np.int64)
    positive = edges >= self.threshold
    return {
      "positives": np.bincount(bins[keep & positive], minlength=self.num_bins),
      "negatives": np.bincount(bins[keep & ~positive], minlength=self.num_bins),
    }

  def metric_result(self, state):
    return pixel_pr_scores(state["positives"], state["negatives"])


def pixel_pr_scores(positives, negatives) -> dict[str, float]:
  """Pixel-exact precision/recall over thresholds from score histograms.

  Args:
    positives: [T] int counts of ground-truth edge pixels per probability bin
      (bin i = [i / T, (i + 1) / T), the last one closed).
    negatives: [T] the same for non-edge pixels.

  Returns:
    dict: ``f_pixel`` best F over thresholds i / T; ``threshold``, ``precision``,
    ``recall`` at it; ``ap_pixel`` the area under the PR curve (step-wise,
    sum of recall increments times precision). NaN when there are no positives.
  """
  positives = np.asarray(positives, np.float64)
  negatives = np.asarray(negatives, np.float64)
  num_bins = positives.shape[0]
  # Predicted positive at threshold i / T: every pixel in bins >= i.
  true_pos = np.cumsum(positives[::-1])[::-1]
  false_pos = np.cumsum(negatives[::-1])[::-1]
  total_pos = positives.sum()
  if total_pos == 0:
    nan = float("nan")
    return {"f_pixel": nan, "ap_pixel": nan, "threshold": nan, "precision": nan, "recall": nan}
  recall = true_pos / total_pos
  predicted = true_pos + false_pos
  precision = np.divide(true_pos, predicted, out=np.ones_like(true_pos), where=predicted > 0)
  denom = precision + recall
  f_measure = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
  best = int(np.argmax(f_measure))
  # Recall grows as the threshold falls: integrate from the highest threshold down.
  recall_desc = recall[::-1]
  gains = np.diff(np.concatenate([[0.0], recall_desc]))
  return {
    "f_pixel": float(f_measure[best]),
    "ap_pixel": float(np.sum(gains * precision[::-1])),
    "threshold": best / num_bins,
    "precision": float(precision[best]),
    "recall": float(recall[best]),
  }
