"""What every task shares: config handling, sampling modes, gathers, masked means,
label validation helpers and the split-level metric plumbing.

A task is a value the train step receives; the step never branches on its name.
Per image (vmap over the batch): ``sample`` -> ``gather_targets`` -> the model's
outputs at the points -> ``loss``. Dense evaluation: ``decode`` the model's dense
outputs, then ``metric_update`` per batch on the host and ``metric_result`` once.

Metric state is a dict whose values combine with ``+``: NumPy arrays of counts
add up, Python lists of per-batch arrays concatenate. So ``metric_update`` and
``metric_merge`` (e.g. across processes) are written once here, and accumulating
two batches equals scoring their concatenation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pixelnet_jax import sampling
from pixelnet_jax.data.pipeline import LabelSpec
from pixelnet_jax.registry import Registry

Labels = Mapping[str, Any]
MetricState = dict[str, Any]

# Every task: a Task subclass registered with its config defaults, found by
# ``config.task.name``; a module of this package is one task.
TASKS = Registry("task", "config.task.name", package="pixelnet_jax.tasks")

# Optional key the input pipeline adds for padded regions: [H, W] bool.
VALID_KEY = "valid"

# Sampling modes every task supports over its own "sampleable" pixels.
COMMON_SAMPLING = ("uniform", "grid", "dense", "hard")

# The dense baseline ('dense' sampling: every valid pixel of each crop) refuses crops
# above this many pixels: its per-pixel points, targets and outputs grow with the crop.
DENSE_MAX_CROP_PIXELS = 512 * 512


def common_config() -> dict[str, Any]:
  """Fields every task config has (a task's ``default_config`` extends them)."""
  return {
    # 'uniform' over sampleable pixels, 'grid' = equal quotas over the cells of
    # a randomly jittered grid_cells x grid_cells grid, 'dense' = every valid pixel
    # of the crop (the FCN-style baseline; config.points_per_image is ignored), 'hard' =
    # hard-pixel mining inside the step: hard_oversample x points_per_image candidates
    # drawn uniformly, scored by their loss under the current model, and the loss taken
    # on the round(hard_fraction x N) hardest plus the first others (the head runs on
    # every candidate, so it costs hard_oversample x the head); tasks add their own modes.
    "sampling": "uniform",
    "grid_cells": 4,
    "hard_oversample": 3,
    "hard_fraction": 0.75,
  }


class Task:
  """Base class of a dense prediction task (see the module docstring).

  Subclasses set ``name``, ``num_outputs``, ``label_keys``, ``main_metric``,
  ``main_metric_mode``, ``sampling_modes`` and implement ``sampleable``,
  ``gather_targets``, ``point_losses`` (or ``loss``), ``decode``,
  ``check_labels``, ``metric_zero``, ``metric_stats`` and ``metric_result``.
  """

  name: str = ""
  num_outputs: int = 0
  label_keys: tuple[str, ...] = ()
  optional_label_keys: tuple[str, ...] = (VALID_KEY,)
  main_metric: str = ""
  main_metric_mode: str = "max"
  # Metrics where lower is better (errors); every other metric is higher-is-better.
  lower_is_better: tuple[str, ...] = ()
  sampling_modes: tuple[str, ...] = COMMON_SAMPLING

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    if config.sampling not in self.sampling_modes:
      raise ValueError(
        f"config.task.sampling={config.sampling!r} is not a sampling mode of task "
        f"{self.name!r}; choose one of {list(self.sampling_modes)}."
      )
    if int(config.grid_cells) < 1:
      raise ValueError(f"config.task.grid_cells must be >= 1, got {config.grid_cells!r}.")
    oversample = config.get("hard_oversample", 3)
    if int(oversample) != oversample or int(oversample) < 1:
      raise ValueError(f"config.task.hard_oversample must be an integer >= 1, got {oversample!r}.")
    if not 0.0 <= float(config.get("hard_fraction", 0.75)) <= 1.0:
      raise ValueError(
        f"config.task.hard_fraction must be in [0, 1], got {config.get('hard_fraction')!r}."
      )

  def __repr__(self):
    return f"{type(self).__name__}({dict(self.config)})"

  # --------------------------------------------------------------------------
  # Batches.

  def label_specs(self) -> dict[str, LabelSpec]:
    """{label key: LabelSpec}: what padded pixels hold and how a mirror changes the
    values, for the input pipeline (default: pad with 0, values unchanged)."""
    return {}

  def select_labels(self, batch: Labels) -> dict[str, Any]:
    """The task's label arrays from a batch or example dict (drops images, ids)."""
    missing = [k for k in self.label_keys if k not in batch]
    if missing:
      raise KeyError(
        f"Task {self.name!r} needs label keys {list(self.label_keys)}; missing "
        f"{missing} (batch has {sorted(batch)}). Use a dataset of this task."
      )
    keys = self.label_keys + tuple(k for k in self.optional_label_keys if k in batch)
    return {k: batch[k] for k in keys}

  # --------------------------------------------------------------------------
  # Sampling (one image; vmap over the batch).

  def sampleable(self, labels: Labels):
    """[H, W] bool, pixels with a target, before the pipeline's ``valid`` mask."""
    raise NotImplementedError

  def sample_mask(self, labels: Labels):
    """[H, W] bool: pixels that may be sampled (target present and inside ``valid``)."""
    mask = self.sampleable(labels)
    if VALID_KEY in labels:
      mask = mask & labels[VALID_KEY].astype(jnp.bool_)
    return mask

  @property
  def dense(self) -> bool:
    """Whether this task trains on every pixel ('dense' sampling)."""
    return self.config.sampling == "dense"

  @property
  def hard(self) -> bool:
    """Whether the step mines hard pixels among oversampled candidates ('hard' sampling)."""
    return self.config.sampling == "hard"

  def num_candidates(self, num_points: int) -> int:
    """Points the step draws and reads per image to keep ``num_points`` of them."""
    return int(self.config.hard_oversample) * num_points if self.hard else num_points

  def select_points(self, outputs, targets, mask, num_points: int):
    """The points the loss is taken on, out of those the step read (one shard).

    Every mode but 'hard' keeps them all. 'hard' keeps, per image, ``num_points`` of
    the ``num_candidates(num_points)`` candidates: the ``hard_fraction`` with the
    highest loss under the current outputs (no gradient through the choice), then
    the first others (the candidates are in random order).

    Args:
      outputs: [b, M, K] float32; targets: per-point targets with leading [b, M];
      mask: [b, M] bool.

    Returns:
      (outputs [b, N, K], targets [b, N, ...], mask [b, N]).
    """
    if not self.hard:
      return outputs, targets, mask

    def one_image(out, tgt, m):
      scores = self.point_losses(out, tgt, m)
      keep = sampling.hardest(scores, m, num_points, float(self.config.hard_fraction))
      return out[keep], jax.tree.map(lambda t: t[keep], tgt), m[keep]

    return jax.vmap(one_image)(outputs, targets, mask)

  def sample(self, key, labels: Labels, num_points: int) -> sampling.PixelSample:
    """Draws ``num_points`` (static) pixels of one image; never outside ``sample_mask``.

    'dense' sampling ignores ``num_points`` and the key: every pixel, row-major
    (``H * W`` points), masked by ``sample_mask``.
    """
    mode = self.config.sampling
    if mode == "dense":
      return all_pixels(self.sample_mask(labels))
    if mode in ("uniform", "hard"):  # 'hard' draws its candidates uniformly.
      return sampling.uniform(key, self.sample_mask(labels), num_points)
    if mode == "grid":
      key_grid, key = jax.random.split(key)
      cells = int(self.config.grid_cells)
      strata = sampling.grid_strata(self.sample_mask(labels), cells, key=key_grid)
      return sampling.stratified(key, strata, num_points, cells * cells)
    return self.sample_task_mode(key, labels, num_points)

  def sample_task_mode(self, key, labels: Labels, num_points: int) -> sampling.PixelSample:
    """Task-specific sampling modes (those beyond ``COMMON_SAMPLING``)."""
    raise ValueError(f"Task {self.name!r} has no sampling mode {self.config.sampling!r}.")

  def sample_hard(
    self,
    key,
    labels: Labels,
    scores,
    num_points: int,
    oversample: int = 3,
    importance: float = 0.75,
  ) -> sampling.PixelSample:
    """Uncertainty-driven sampling over ``sample_mask``: ``scores`` [H, W] float,
    higher = harder (e.g. the loss or entropy of a previous dense prediction)."""
    return sampling.hard_pixels(
      key,
      scores,
      num_points,
      oversample=oversample,
      importance=importance,
      valid=self.sample_mask(labels),
    )

  # --------------------------------------------------------------------------
  # Targets and losses.

  def gather_targets(self, labels: Labels, coords):
    """Per-point targets at ``coords`` [N, 2] int32 (row, col) of one image."""
    raise NotImplementedError

  def point_losses(self, outputs, targets, mask):
    """[...] float32 loss per point (finite everywhere, also where ``mask`` is false)."""
    raise NotImplementedError

  def loss(self, outputs, targets, mask):
    """Mean loss over the points where ``mask`` is true.

    Args:
      outputs: [..., N, K] the model's outputs at the points (any leading batch axes).
      targets: per-point targets from ``gather_targets`` (same leading axes).
      mask: [..., N] bool.

    Returns:
      scalar float32 (0 when no point is valid).
    """
    return masked_mean(self.point_losses(outputs, targets, mask), mask)

  def decode(self, dense_outputs):
    """Prediction map from dense outputs [..., H, W, K]."""
    raise NotImplementedError

  # --------------------------------------------------------------------------
  # Host-side validation.

  def validate_labels(self, labels: Labels) -> None:
    """Checks one example's or a batch's labels on the host; raises a ValueError
    naming the key and the fix. Call at the edges (data pipeline, eval), not in jit."""
    missing = [k for k in self.label_keys if k not in labels]
    if missing:
      raise ValueError(
        f"Task {self.name!r} needs label keys {list(self.label_keys)}; missing {missing}."
      )
    arrays = {k: np.asarray(labels[k]) for k in self.label_keys}
    spatial = self.check_labels(arrays)
    if VALID_KEY in labels:
      valid = np.asarray(labels[VALID_KEY])
      if valid.shape != spatial:
        raise ValueError(
          f"labels['{VALID_KEY}'] has shape {valid.shape}, expected the label "
          f"map shape {spatial} ([..., H, W] bool)."
        )
      if valid.dtype != np.bool_:
        raise ValueError(f"labels['{VALID_KEY}'] must be bool, got {valid.dtype}.")

  def check_labels(self, labels: dict[str, np.ndarray]) -> tuple[int, ...]:
    """Task checks on host arrays; returns the [..., H, W] shape of the label map."""
    raise NotImplementedError

  # --------------------------------------------------------------------------
  # Split-level metrics (host, NumPy).

  def metric_init(self) -> MetricState:
    """An empty accumulator."""
    return self.metric_zero()

  def metric_update(self, state: MetricState, prediction, labels: Labels) -> MetricState:
    """Adds a batch (or one image): ``prediction`` from ``decode`` at the labels'
    resolution, [..., H, W(, K)]; ``labels`` the matching label arrays (+ ``valid``)."""
    labels = {k: np.asarray(v) for k, v in self.select_labels(labels).items()}
    self.validate_labels(labels)
    prediction = np.asarray(prediction)
    expected = self.prediction_shape(labels)
    if prediction.shape != expected:
      raise ValueError(
        f"Task {self.name!r}: prediction shape {prediction.shape} must be {expected} "
        "(resize dense predictions to the label resolution before scoring)."
      )
    valid = labels.get(VALID_KEY)
    return self.metric_merge(state, self.metric_stats(prediction, labels, valid))

  @staticmethod
  def metric_merge(state: MetricState, other: MetricState) -> MetricState:
    """Combines two accumulators (counts add, lists of arrays concatenate)."""
    if set(state) != set(other):
      raise ValueError(f"Metric states differ in keys: {sorted(state)} vs {sorted(other)}.")
    return {k: state[k] + other[k] for k in state}

  def prediction_shape(self, labels: dict[str, np.ndarray]) -> tuple[int, ...]:
    """Shape ``decode`` gives at the labels' resolution."""
    raise NotImplementedError

  def metric_zero(self) -> MetricState:
    raise NotImplementedError

  def metric_stats(
    self, prediction: np.ndarray, labels: dict[str, np.ndarray], valid: np.ndarray | None
  ) -> MetricState:
    raise NotImplementedError

  def metric_result(self, state: MetricState) -> dict[str, float]:
    raise NotImplementedError

  def metric_details(self, state: MetricState) -> dict[str, list]:
    """Non-scalar results worth keeping beside the scalars (e.g. per-class IoU, the
    confusion matrix), as JSON-ready lists; none by default."""
    del state
    return {}


# ----------------------------------------------------------------------------
# Shared helpers.


def all_pixels(mask) -> sampling.PixelSample:
  """Every pixel of an [H, W] bool mask as a sample: coords [H * W, 2] int32, row-major,
  and the mask flattened."""
  height, width = mask.shape
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
  coords = jnp.stack([rows.reshape(-1), cols.reshape(-1)], axis=-1).astype(jnp.int32)
  return sampling.PixelSample(coords=coords, mask=mask.reshape(-1).astype(jnp.bool_))


def gather(array, coords):
  """Values of a [H, W, ...] map at coords [N, 2] int32 (row, col) -> [N, ...]."""
  return array[coords[..., 0], coords[..., 1]]


def masked_mean(values, mask):
  """Mean of ``values`` [...] over ``mask`` [...] (0 when the mask is empty).

  Masked-out values are replaced (not multiplied) so a NaN there cannot leak.
  """
  mask = jnp.broadcast_to(mask, values.shape)
  total = jnp.sum(jnp.where(mask, values, 0.0))
  return total / jnp.maximum(jnp.sum(mask), 1).astype(total.dtype)


def check_map(
  labels: dict[str, np.ndarray], key: str, trailing: tuple[int, ...] = (), kinds: str = "f"
) -> tuple[int, ...]:
  """Checks ``labels[key]`` has shape [..., H, W, *trailing] and a dtype kind in
  ``kinds`` (NumPy kind codes: 'b' bool, 'i'/'u' int, 'f' float); returns [..., H, W]."""
  arr = labels[key]
  names = {"b": "bool", "i": "int", "u": "unsigned int", "f": "float"}
  want = "[..., H, W" + "".join(f", {t}" for t in trailing) + "]"
  if arr.ndim < 2 + len(trailing) or tuple(arr.shape[arr.ndim - len(trailing) :]) != trailing:
    raise ValueError(f"labels['{key}'] must have shape {want}, got {arr.shape}.")
  if arr.dtype.kind not in kinds:
    raise ValueError(
      f"labels['{key}'] must be {' or '.join(names[k] for k in kinds)}, got dtype {arr.dtype}."
    )
  return tuple(arr.shape[: arr.ndim - len(trailing)])


def check_same_shape(labels: dict[str, np.ndarray], key: str, shape: Sequence[int]):
  if tuple(labels[key].shape) != tuple(shape):
    raise ValueError(f"labels['{key}'] has shape {labels[key].shape}, expected {tuple(shape)}.")


def config_from(defaults: dict[str, Any], config, task_name: str) -> ml_collections.ConfigDict:
  """Task defaults overridden by ``config`` (a dict/ConfigDict; ``None`` = defaults).

  Unknown fields are an error (a typo would otherwise be silently ignored). The
  result has a ``name`` field; one in ``config`` must match the task.
  """
  merged = ml_collections.ConfigDict(dict(defaults, name=task_name))
  if config is None:
    return merged
  items = config.items() if hasattr(config, "items") else dict(config).items()
  for key, value in items:
    if key == "name":
      if value != task_name:
        raise ValueError(f"config.task.name={value!r} does not match task {task_name!r}.")
      continue
    if key not in merged:
      raise ValueError(
        f"Unknown field config.task.{key} for task {task_name!r}; known fields: {sorted(merged)}."
      )
    if isinstance(value, ml_collections.ConfigDict):
      value = value.to_dict()
    merged[key] = value
  return merged
