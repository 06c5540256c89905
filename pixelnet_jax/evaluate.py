"""Dense inference over an eval split, the task's metrics, and pictures.

Test time is dense: the trunk runs once per image and the head over chunks of
pixels (``PixelNet.predict_dense``); the task decodes the outputs and
accumulates its split-level metric on the host.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from pixelnet_jax import utils
from pixelnet_jax.data import pipeline
from pixelnet_jax.models import PixelNet

logging = utils.get_logger()

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


def dense_predictor(model: PixelNet, chunk_size: int | None):
  """jit(variables, images [B, H, W, 3]) -> dense outputs [B, H, W, K]."""
  return jax.jit(
    lambda variables, images: model.apply(
      variables, images, method=PixelNet.predict_dense, chunk_size=chunk_size
    )
  )


def eval_batches(source, task, batch_size: int, limit: int | None) -> Iterator[dict]:
  batches = pipeline.make_eval_batches(source, batch_size, label_keys=task.label_keys)
  if limit is None:
    return batches
  return itertools.islice(batches, -(-int(limit) // batch_size))


class Evaluator:
  """Scores a state on the eval split; writes metrics and pictures into ``workdir``."""

  def __init__(self, config, model: PixelNet, task, source, workdir: str, writer=None):
    self.config, self.task, self.source = config, task, source
    self.workdir, self.writer = workdir, writer
    self.predict = dense_predictor(model, config.eval.get("chunk_size"))
    num_points = int(config.points_per_image)
    self._sample = jax.jit(lambda key, labels: task.sample(key, labels, num_points))
    self.picture_dir = os.path.join(workdir, "pictures")

  def run(self, state, step: int) -> dict[str, float]:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    metric_state = self.task.metric_init()
    num_pictures = int(self.config.eval.num_pictures)
    drawn = 0
    batch_size = int(self.config.eval.batch_size)
    limit = self.config.dataset.get("num_eval_examples")
    for batch in eval_batches(self.source, self.task, batch_size, limit):
      dense = self.predict(variables, jnp.asarray(batch["image"]))
      prediction = np.asarray(self.task.decode(dense))
      labels = {k: np.asarray(v) for k, v in self.task.select_labels(batch).items()}
      metric_state = self.task.metric_update(metric_state, prediction, labels)
      for i in range(prediction.shape[0]):
        if drawn >= num_pictures:
          break
        self._picture(step, drawn, batch, labels, prediction, i)
        drawn += 1
    metrics = {
      k: float(v) for k, v in self.task.metric_result(metric_state).items() if np.ndim(v) == 0
    }
    logging.info(
      "eval at step %d: %s", step, "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
    )
    if self.writer is not None:
      self.writer.write(step, "eval", metrics)
    return metrics

  def _picture(self, step, index, batch, labels, prediction, i):
    os.makedirs(self.picture_dir, exist_ok=True)
    image = display_image(batch["image"][i])
    valid = batch["valid"][i] if "valid" in batch else None
    truth = labels[self.task.label_keys[0]][i]
    one = {k: jnp.asarray(v[i]) for k, v in labels.items()}
    sample = self._sample(jax.random.key(step * 1000 + index), one)
    picture = panel(
      image,
      to_rgb(truth, valid),
      to_rgb(prediction[i], valid),
      draw_points(image, np.asarray(sample.coords), np.asarray(sample.mask)),
    )
    path = os.path.join(self.picture_dir, f"step{step:07d}_{index}.png")
    Image.fromarray(picture).save(path)
    if self.writer is not None:
      self.writer.image(step, f"eval/picture_{index}", picture)


def restore_checkpoint(
  config, workdir: str, step: int | None = None, best: bool = False
) -> tuple[Any, Any, Any]:
  """The task, the eval-mode model and the restored TrainState of a run's checkpoint.

  Args:
    config: the run's config (the one it was trained with).
    workdir: the run's work directory.
    step: a step under ``checkpoints/`` (default: the latest); ignored with ``best``.
    best: restore ``best/`` (the best in-training metric) instead.

  Returns:
    (task, model, state) with host arrays.
  """
  from pixelnet_jax import train  # pylint: disable=g-import-not-at-top

  task, crop = train.validate_config(config, 1)
  model = train._model_fn(config, task)(None)  # pylint: disable=protected-access
  state = train.create_train_state(config, model, jax.random.key(int(config.seed)), crop)
  checkpoints = train.Checkpoints(
    workdir, int(config.keep_checkpoints), task.main_metric, task.main_metric_mode
  )
  try:
    available = (checkpoints.best if best else checkpoints.last).all_steps()
    folder = "best" if best else "checkpoints"
    if not available:
      raise FileNotFoundError(
        f"No checkpoint in {workdir}/{folder}; train first with pixelnet-train --workdir {workdir}"
      )
    if step is not None and not best and step not in available:
      raise ValueError(
        f"step={step} is not a checkpoint of {workdir}; available: {sorted(available)}."
      )
    restored = checkpoints.restore(train.host_state(state), step=None if best else step, best=best)
  finally:
    checkpoints.close()
  return task, model, restored


def evaluate_checkpoint(
  config, workdir: str, step: int | None = None, best: bool = False
) -> dict[str, Any]:
  """``pixelnet-eval``: restores a checkpoint of ``workdir`` and runs the dense protocol."""
  from pixelnet_jax.data import registry  # pylint: disable=g-import-not-at-top

  task, model, restored = restore_checkpoint(config, workdir, step=step, best=best)
  source = registry.get_source(config.dataset.name, config.dataset.eval_split, config.dataset)
  metrics = Evaluator(config, model, task, source, workdir).run(restored, int(restored.step))
  result = {"step": int(restored.step), "split": config.dataset.eval_split, **metrics}
  with open(os.path.join(workdir, f"eval_step{int(restored.step)}.json"), "w") as f:
    json.dump(result, f, indent=2)
  return result
