"""Dense prediction of a whole split to files, one per image, for every task.

Every image of the split is predicted at its native resolution with the evaluation path
(``evaluate.dense_predictor``, which resizes by ``config.eval.scale`` and the outputs
back, and the task's ``decode``) and written as
``<out_dir>/<image id>.png`` (an id with '/' gives a sub-folder, e.g. NYUv2's
``test/0``). The format is the task's writer, registered in ``WRITERS`` by task name:

- edges: mode L, value = round(probability * 255), for the BSDS benchmark::

    pixelnet-eval-boundaries --nms --pred_dir OUT_DIR \\
        --gt_dir $PIXELNET_TEST_DATA/BSR/BSDS500/data/groundTruth/val

- segmentation: the class ids (argmax; the ignore label is never predicted), 8-bit; mode P
  under the dataset's label palette where it has one (VOC's for voc2012 and
  pascal_context, as their label files), else greyscale mode L holding the ids.
- normals: RGB = round((n + 1) / 2 * 255) of the unit normals (x, y, z camera frame: x
  right, y down, z towards the camera); decode with n = v / 127.5 - 1 (error <= 1/255).
  With ``save_npy`` also ``<id>.npy``, the float32 [H, W, 3] unit normals.

Multi-scale testing (``scales``): each rescaled copy's dense output is mapped to the
writer's averaging space (edge probability; class probabilities, softmax; unit normals),
resized back and averaged; the average is then decoded (argmax, renormalisation). Class
ids are never averaged.

Command line (``main.run_predict``; same config flags as ``pixelnet-train``)::

  pixelnet-predict --config experiments/configs/bsds_edges.py \\
      --workdir RUN --out_dir PNGS [--split val] [--step N | --best] [--scales 0.5,1,1.5] \\
      [--save_npy]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from pixelnet_jax import evaluate, utils
from pixelnet_jax.data import registry
from pixelnet_jax.registry import Registry

logging = utils.get_logger()

# Task name -> its PredictionWriter subclass, with the options it accepts as defaults.
WRITERS = Registry("prediction writer", "config.task.name")


def check_scales(scales: Sequence[float]) -> tuple[float, ...]:
  """``scales`` as a tuple of positive finite floats; a ValueError saying what is wrong."""
  try:
    values = tuple(float(s) for s in scales)
  except (TypeError, ValueError) as e:
    raise ValueError(f"scales must be numbers, e.g. 0.5,1,1.5; got {tuple(scales)!r} ({e}).") from e
  if not values or any(not (math.isfinite(s) and s > 0) for s in values):
    raise ValueError(f"scales must be positive factors, e.g. 0.5,1,1.5; got {tuple(scales)}.")
  return values


def multiscale_average(
  predict, variables, images, scales: Sequence[float], transform: Callable
) -> jax.Array:
  """``transform(dense outputs)`` averaged over rescaled copies of the images.

  Each copy is resized by ``scale`` (bilinear, antialiased when shrinking), predicted
  densely, transformed, and resized back to the input size (bilinear); the maps are
  averaged (multi-scale testing as in HED/RCF).

  Args:
    predict: ``evaluate.dense_predictor(model, chunk_size)``.
    variables: {'params', 'batch_stats'}.
    images: [B, H, W, 3] float32, normalised.
    scales: positive factors; (1.0,) is plain dense prediction.
    transform: dense outputs [B, h, w, K] -> maps [B, h, w] or [B, h, w, C], the space
      averaging is meaningful in (probabilities, unit vectors).

  Returns:
    [B, H, W] or [B, H, W, C] float32.
  """
  scales = check_scales(scales)
  batch, height, width, channels = images.shape
  total = None
  for scale in scales:
    size = (max(1, int(round(height * scale))), max(1, int(round(width * scale))))
    resized = (
      images
      if size == (height, width)
      else jax.image.resize(images, (batch, *size, channels), "linear")
    )
    mapped = transform(predict(variables, resized))
    if mapped.ndim not in (3, 4):
      raise ValueError(
        f"Multi-scale averaging needs one map per image ([B, H, W] or [B, H, W, C]), "
        f"got shape {mapped.shape}."
      )
    if size != (height, width):
      mapped = jax.image.resize(mapped, (batch, height, width, *mapped.shape[3:]), "linear")
    mapped = mapped.astype(jnp.float32)
    total = mapped if total is None else total + mapped
  return total / len(scales)


def multiscale_decode(
  predict, task, variables, images, scales: Sequence[float] = (1.0,)
) -> jax.Array:
  """The task's decoded map averaged over rescaled copies of the images (see
  ``multiscale_average``); meaningful where ``decode`` gives probabilities (edges)."""
  decoded = multiscale_average(predict, variables, images, scales, task.decode)
  if decoded.ndim != 3:
    raise ValueError(
      f"Multi-scale averaging of decoded maps needs one map per image from the task's "
      f"decode, got shape {decoded.shape}."
    )
  return decoded


# ----------------------------------------------------------------------------------------
# Per-task writers.


class PredictionWriter:
  """Turns one task's dense outputs into files; subclass per task, registered in
  ``WRITERS`` under the task's name with the options it accepts (and their defaults).

  ``average`` maps dense outputs to the space multi-scale testing averages in,
  ``finish`` decodes an average; ``write`` saves one image's decoded prediction.
  """

  description = "predictions"

  def __init__(self, task, source, options: Mapping[str, Any]):
    self.task, self.source, self.options = task, source, dict(options)

  def average(self, dense):
    """Dense outputs [..., H, W, K] -> what multi-scale testing averages."""
    return self.task.decode(dense)

  def finish(self, averaged):
    """The average over scales -> the decoded prediction."""
    return averaged

  def write(self, prediction: np.ndarray, stem: str) -> list[str]:
    """Writes one image's decoded prediction as ``stem`` + suffixes; returns the paths."""
    raise NotImplementedError


@WRITERS.register("edges")
class EdgeWriter(PredictionWriter):
  """8-bit greyscale PNG of the edge probability (the BSDS benchmark's input)."""

  description = "edge maps"

  def write(self, prediction, stem):
    path = stem + ".png"
    Image.fromarray(to_png_levels(prediction)).save(path)  # [H, W] uint8: mode L
    return [path]


@WRITERS.register("segmentation")
class SegmentationWriter(PredictionWriter):
  """8-bit PNG of class ids: palette mode P under the source's ``label_palette``, else L.

  Multi-scale testing averages class probabilities (softmax), then takes the argmax.
  """

  description = "class-id maps"

  def __init__(self, task, source, options):
    super().__init__(task, source, options)
    if task.num_classes > 256:
      raise ValueError(
        f"Class ids of {task.num_classes} classes (config.task.num_classes) do not fit "
        "an 8-bit PNG; pixelnet-predict writes at most 256 classes."
      )
    self.palette = getattr(source, "label_palette", None)

  def average(self, dense):
    return jax.nn.softmax(dense.astype(jnp.float32), axis=-1)

  def finish(self, averaged):
    return self.task.decode(averaged)

  def write(self, prediction, stem):
    path = stem + ".png"
    class_id_png(prediction, self.task.num_classes, self.palette).save(path)
    return [path]


@WRITERS.register("normals", defaults=dict(save_npy=False))
class NormalsWriter(PredictionWriter):
  """RGB PNG of round((n + 1) / 2 * 255); with ``save_npy`` also the float32 normals.

  Multi-scale testing averages unit normals, then renormalises them.
  """

  description = "normal maps"

  def finish(self, averaged):
    return self.task.decode(averaged)

  def write(self, prediction, stem):
    paths = [stem + ".png"]
    Image.fromarray(normals_to_rgb(prediction)).save(paths[0])  # [H, W, 3] uint8: RGB
    if self.options["save_npy"]:
      paths.append(stem + ".npy")
      np.save(paths[1], np.asarray(prediction, np.float32))
    return paths


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


def class_id_png(ids: np.ndarray, num_classes: int, palette: np.ndarray | None = None):
  """ids [H, W] int in [0, num_classes) -> a PIL image of the ids: mode P under
  ``palette`` ([256, 3] uint8), or mode L without one."""
  ids = np.asarray(ids)
  if ids.ndim != 2 or ids.dtype.kind not in "iu":
    raise ValueError(f"A class-id map must be [H, W] integers, got {ids.shape} {ids.dtype}.")
  if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
    raise ValueError(
      f"Class ids must be in [0, {num_classes}), found {int(ids.min())}..{int(ids.max())}."
    )
  image = Image.fromarray(ids.astype(np.uint8))  # mode L
  if palette is None:
    return image
  palette = np.asarray(palette, np.uint8)
  if palette.shape != (256, 3):
    raise ValueError(f"A label palette must be [256, 3] uint8, got {palette.shape}.")
  image.putpalette(palette.reshape(-1).tolist())  # L -> P, the values become indices.
  return image


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
  """Unit normals [H, W, 3] -> uint8 RGB round((n + 1) / 2 * 255); read back with
  n = v / 127.5 - 1 (``data.nyuv2.png_normals``), within 1/255 per component."""
  normals = np.asarray(normals, np.float64)
  if normals.ndim != 3 or normals.shape[-1] != 3:
    raise ValueError(f"A normal map must be [H, W, 3], got shape {normals.shape}.")
  if not np.all(np.isfinite(normals)):
    raise ValueError("The normal map holds NaN/Inf: the checkpoint's outputs are not finite.")
  return np.round((np.clip(normals, -1.0, 1.0) + 1.0) / 2.0 * 255.0).astype(np.uint8)


def writer_options(task_name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The options of task ``task_name``'s writer: its defaults updated by ``options``; an
  option it does not take is a ValueError naming the tasks that take it."""
  try:
    entry = WRITERS.entry(task_name)
  except ValueError as e:
    raise ValueError(
      f"pixelnet-predict has no writer for task {task_name!r}; tasks with one: {WRITERS.names()}."
    ) from e
  merged = dict(entry.defaults)
  for key, value in (options or {}).items():
    if key not in merged:
      takers = [n for n in WRITERS.names() if key in WRITERS.entry(n).defaults]
      raise ValueError(
        f"--{key} does not apply to task {task_name!r} ({entry.obj.description}); it is "
        f"an option of task(s) {takers}."
      )
    merged[key] = value
  return merged


def get_writer(task, source, options: Mapping[str, Any] | None = None) -> PredictionWriter:
  """The registered writer of ``task`` (see ``writer_options``)."""
  merged = writer_options(task.name, options)
  return WRITERS.get(task.name)(task, source, merged)


# ----------------------------------------------------------------------------------------
# The split.


def _output_stem(out_dir: str, image_id: str) -> str:
  """``<out_dir>/<image id>`` (sub-folders created); ids that leave out_dir are refused."""
  parts = image_id.replace("\\", "/").split("/")
  if not image_id or image_id.startswith("/") or any(p in ("", ".", "..") for p in parts):
    raise ValueError(f"Image id {image_id!r} cannot name a file under {out_dir}.")
  stem = os.path.join(out_dir, *parts)
  os.makedirs(os.path.dirname(stem), exist_ok=True)
  return stem


def predict_split(
  config,
  task,
  model,
  state,
  split: str,
  limit: int | None = None,
  scales: Sequence[float] = (1.0,),
  writer: PredictionWriter | None = None,
  source=None,
  shard_index: int = 0,
  shard_count: int = 1,
) -> Iterator[tuple[str, np.ndarray]]:
  """Yields (image id, decoded prediction at the image's own size) over a split, in order.

  Images are batched by ``config.eval.batch_size`` (padded to the batch's largest
  image, then cropped back to each image's ``image_size``). ``scales`` other than
  (1.0,) average in ``writer``'s space (default: the task's writer; see
  ``multiscale_average``). ``shard_index`` of ``shard_count``: only the batches
  shard_index, shard_index + shard_count, ... (a process's share of the split).
  """
  scales = check_scales(scales)
  source = source or registry.get_source(config.dataset.name, split, config.dataset)
  writer = writer or get_writer(task, source)
  predict = evaluate.dense_predictor(
    model, config.eval.get("chunk_size"), config.eval.get("scale", 1.0)
  )
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  batch_size = int(config.eval.batch_size)
  total = len(source) if limit is None else min(int(limit), len(source))
  batches = evaluate.eval_batches(source, task, batch_size, limit, shard_index, shard_count)
  for number, batch in enumerate(batches):
    first = (shard_index + number * shard_count) * batch_size  # global index of item 0
    images = jnp.asarray(batch["image"])
    if scales == (1.0,):
      decoded = task.decode(predict(variables, images))
    else:
      decoded = writer.finish(
        multiscale_average(predict, variables, images, scales, writer.average)
      )
    decoded = np.asarray(decoded)
    ids = batch.get("id", [None] * decoded.shape[0])
    for i in range(decoded.shape[0]):
      index = first + i
      if index >= total:
        return
      height, width = (int(v) for v in batch["image_size"][i])
      image_id = ids[i]
      if isinstance(image_id, bytes):
        image_id = image_id.decode("utf-8")
      yield (str(image_id) if image_id is not None else f"{index:06d}", decoded[i, :height, :width])


def write_predictions(
  config,
  workdir: str,
  out_dir: str,
  split: str | None = None,
  step: int | None = None,
  best: bool = False,
  limit: int | None = None,
  scales: Sequence[float] = (1.0,),
  save_npy: bool = False,
) -> dict[str, Any]:
  """Predicts a split with a run's checkpoint and writes ``<out_dir>/<id>.png`` (+ .npy).

  Args:
    config: the run's config.
    workdir: the run's work directory (its checkpoints are read).
    out_dir: where the files go (created).
    split: the split (default ``config.dataset.eval_split``).
    step, best: which checkpoint (default: the latest); not both.
    limit: predict only the first ``limit`` images (default: all).
    scales: test-time scales averaged (see the module docstring).
    save_npy: normals only: also ``<id>.npy``, float32 unit normals.

  Returns:
    {'step', 'split', 'task', 'out_dir', 'ids', 'files'}: what was written (by this
    process: in a multi-process run each process writes its share of the batches).
  """
  if step is not None and best:
    raise ValueError("Give --step or --best, not both.")
  if limit is not None and int(limit) < 1:
    raise ValueError(f"limit must be >= 1, got {limit}.")
  scales = check_scales(scales)
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"--out_dir {out_dir} is a file, not a folder.")
  split = split or config.dataset.eval_split
  options = {"save_npy": True} if save_npy else {}
  writer_options(config.task.name, options)  # Bad options fail before anything loads.
  source = registry.get_source(config.dataset.name, split, config.dataset)
  task, model, state = evaluate.restore_checkpoint(config, workdir, step=step, best=best)
  writer = get_writer(task, source, options)
  os.makedirs(out_dir, exist_ok=True)
  ids, files = [], []
  # Several processes (jax.distributed): each predicts and writes its own share of the
  # batches; the files do not overlap.
  for image_id, prediction in predict_split(
    config,
    task,
    model,
    state,
    split,
    limit,
    scales,
    writer=writer,
    source=source,
    shard_index=jax.process_index(),
    shard_count=jax.process_count(),
  ):
    files += writer.write(prediction, _output_stem(out_dir, image_id))
    ids.append(image_id)
    if len(ids) % 20 == 0:
      logging.info("predicted %d images of %s", len(ids), split)
  logging.info(
    "wrote %d %s of split %r (step %d) to %s",
    len(ids),
    writer.description,
    split,
    int(state.step),
    out_dir,
  )
  return {
    "step": int(state.step),
    "split": split,
    "task": task.name,
    "out_dir": out_dir,
    "ids": ids,
    "files": files,
  }


def write_edge_maps(config, workdir: str, out_dir: str, **kwargs) -> dict[str, Any]:
  """``write_predictions`` of an edges run (8-bit edge-probability PNGs)."""
  if config.task.name != "edges":
    raise ValueError(
      f"write_edge_maps writes edge maps; this config's task is {config.task.name!r}: "
      "use write_predictions."
    )
  return write_predictions(config, workdir, out_dir, **kwargs)
