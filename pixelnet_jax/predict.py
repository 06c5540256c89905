"""Dense prediction of a whole split to 8-bit PNG edge maps, for the BSDS benchmark.

The BSDS protocol scores files, not a metric inside training: every image of
the split is predicted at its native resolution with the evaluation path
(``evaluate.dense_predictor`` and the task's ``decode``), and written as
``<out_dir>/<image id>.png``, mode L, value = round(probability * 255). Then

  pixelnet-eval-boundaries --nms --pred_dir OUT_DIR \
      --gt_dir $PIXELNET_TEST_DATA/BSR/BSDS500/data/groundTruth/val

Command line (``main.run_predict``; same config flags as ``pixelnet-train``):

  pixelnet-predict --config experiments/configs/bsds_edges.py \
      --workdir RUN --out_dir PNGS [--split val] [--step N | --best] [--scales 0.5,1,1.5]
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from pixelnet_jax import evaluate, utils
from pixelnet_jax.data import registry

logging = utils.get_logger()


def multiscale_decode(
  predict, task, variables, images, scales: Sequence[float] = (1.0,)
) -> jax.Array:
  """The task's decoded map averaged over rescaled copies of the images.

  Each copy is resized by ``scale`` (bilinear, antialiased when shrinking),
  predicted densely, decoded, and its map resized back to the input size; the
  maps are averaged (multi-scale testing as in HED/RCF). Only meaningful for
  tasks whose ``decode`` gives a probability map per image (edges).

  Args:
    predict: ``evaluate.dense_predictor(model, chunk_size)``.
    task: the task (its ``decode``).
    variables: {'params', 'batch_stats'}.
    images: [B, H, W, 3] float32, normalised.
    scales: positive factors; (1.0,) is plain dense prediction.

  Returns:
    [B, H, W] float32.
  """
  if not scales or any(float(s) <= 0 for s in scales):
    raise ValueError(f"scales must be positive factors, got {tuple(scales)}.")
  batch, height, width, channels = images.shape
  total = None
  for scale in scales:
    size = (max(1, int(round(height * float(scale)))), max(1, int(round(width * float(scale)))))
    resized = (
      images
      if size == (height, width)
      else jax.image.resize(images, (batch, *size, channels), "linear")
    )
    decoded = task.decode(predict(variables, resized))
    if decoded.ndim != 3:
      raise ValueError(
        f"Multi-scale averaging needs one map per image from the task's "
        f"decode, got shape {decoded.shape}."
      )
    if size != (height, width):
      decoded = jax.image.resize(decoded, (batch, height, width), "linear")
    total = decoded if total is None else total + decoded
  return total / len(scales)


def predict_split(
  config, task, model, state, split: str, limit: int | None = None, scales: Sequence[float] = (1.0,)
) -> Iterator[tuple[str, np.ndarray]]:
  """Yields (image id, decoded prediction at the image's own size) over a split, in order.

  Images are batched by ``config.eval.batch_size`` (padded to the batch's largest
  image, then cropped back to each image's ``image_size``). ``scales`` other
  than (1.0,): see ``multiscale_decode``.
  """
  source = registry.get_source(config.dataset.name, split, config.dataset)
  predict = evaluate.dense_predictor(
    model, config.eval.get("chunk_size"), config.eval.get("scale", 1.0)
  )
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  batch_size = int(config.eval.batch_size)
  index = 0
  for batch in evaluate.eval_batches(source, task, batch_size, limit):
    images = jnp.asarray(batch["image"])
    if tuple(scales) == (1.0,):
      decoded = np.asarray(task.decode(predict(variables, images)))
    else:
      decoded = np.asarray(multiscale_decode(predict, task, variables, images, scales))
    ids = batch.get("id", [None] * decoded.shape[0])
    for i in range(decoded.shape[0]):
      if limit is not None and index >= int(limit):
        return
      height, width = (int(v) for v in batch["image_size"][i])
      image_id = ids[i]
      if isinstance(image_id, bytes):
        image_id = image_id.decode("utf-8")
      yield (str(image_id) if image_id is not None else f"{index:06d}", decoded[i, :height, :width])
      index += 1


def to_png_levels(probability: np.ndarray) -> np.ndarray:
  """probability [H, W] float in [0, 1] -> [H, W] uint8 round(p * 255)."""
  probability = np.asarray(probability, np.float64)
  if probability.ndim != 2:
    raise ValueError(
      f"An edge map must be [H, W], got shape {probability.shape}; "
      "write_edge_maps needs a task whose decode gives one map per image."
    )
  if np.isnan(probability).any():
    raise ValueError("The edge map holds NaN: the checkpoint's outputs are not finite.")
  return np.round(np.clip(probability, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_edge_maps(
  config,
  workdir: str,
  out_dir: str,
  split: str | None = None,
  step: int | None = None,
  best: bool = False,
  limit: int | None = None,
  scales: Sequence[float] = (1.0,),
) -> dict[str, Any]:
  """Predicts a split with a run's checkpoint and writes ``<out_dir>/<id>.png``.

  Args:
    config: the run's config.
    workdir: the run's work directory (its checkpoints are read).
    out_dir: where the PNGs go (created).
    split: the split (default ``config.dataset.eval_split``).
    step, best: which checkpoint (default: the latest).
    limit: predict only the first ``limit`` images (default: all).
    scales: test-time scales whose maps are averaged (see ``multiscale_decode``).

  Returns:
    {'step', 'split', 'out_dir', 'ids'}: what was written.
  """
  split = split or config.dataset.eval_split
  task, model, state = evaluate.restore_checkpoint(config, workdir, step=step, best=best)
  os.makedirs(out_dir, exist_ok=True)
  ids = []
  for image_id, probability in predict_split(config, task, model, state, split, limit, scales):
    Image.fromarray(to_png_levels(probability), mode="L").save(
      os.path.join(out_dir, f"{image_id}.png")
    )
    ids.append(image_id)
    if len(ids) % 20 == 0:
      logging.info("predicted %d images of %s", len(ids), split)
  logging.info(
    "wrote %d edge maps of split %r (step %d) to %s", len(ids), split, int(state.step), out_dir
  )
  return {"step": int(state.step), "split": split, "out_dir": out_dir, "ids": ids}
