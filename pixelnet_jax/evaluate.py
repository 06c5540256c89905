"""Dense inference over an eval split, the task's metrics, and pictures.

Test time is dense: the trunk runs once per image and the head over chunks of
pixels (``PixelNet.predict_dense``); the task decodes the outputs and
accumulates its split-level metric on the host.

Evaluation is sharded over devices and processes: eval batch n goes to process
n mod P (which reads only its batches), and each process spreads its batches over its
devices, one batch per device at a time. Every batch is predicted exactly as on one
device, so the metrics do not depend on the layout; the processes' metric accumulators
are merged (``Task.metric_merge``) and process 0 alone writes metrics and pictures.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from pixelnet_jax import config_base, distributed, models, parallel, utils
from pixelnet_jax.checkpoints import Checkpoints
from pixelnet_jax.data import pipeline, registry
from pixelnet_jax.models import PixelNet
from pixelnet_jax.pictures import display_image, draw_points, panel, to_rgb
from pixelnet_jax.state import create_train_state, host_state

logging = utils.get_logger()


def dense_predictor(model: PixelNet, chunk_size: int | None, scale: float = 1.0):
  """jit(variables, images [B, H, W, 3]) -> dense outputs [B, H, W, K].

  With ``scale`` != 1 the images are resized by it (bilinear, antialiased when shrinking),
  predicted, and the outputs resized back to [H, W] (bilinear, before any decoding), so
  a model trained on rescaled images is still scored at the labels' resolution.
  """
  scale = float(scale)
  if not scale > 0:
    raise ValueError(f"scale must be > 0, got {scale}.")

  def predict(variables, images):
    batch, height, width, channels = images.shape
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if size != (height, width):
      images = jax.image.resize(images, (batch, *size, channels), "linear")
    outputs = model.apply(variables, images, method=PixelNet.predict_dense, chunk_size=chunk_size)
    if size != (height, width):
      outputs = jax.image.resize(outputs, (batch, height, width, outputs.shape[-1]), "linear")
    return outputs

  return jax.jit(predict)


def _replicated(x, sharding: NamedSharding):
  """``x`` replicated over ``sharding`` (this process's devices) without a host round trip
  where it can: a replicated device array (the train step's state, global or not) gives
  its copies on those devices, its first copy moved to the others; a host array is
  transferred."""
  if not isinstance(x, jax.Array):
    return jax.device_put(x, sharding)
  if not x.sharding.is_fully_replicated:
    raise ValueError(f"Evaluation needs a replicated state, got sharding {x.sharding}.")
  have = {shard.device: shard.data for shard in x.addressable_shards}
  copies = [
    have[d] if d in have else jax.device_put(x.addressable_data(0), d)
    for d in sharding.mesh.devices.flat
  ]
  return jax.make_array_from_single_device_arrays(x.shape, sharding, copies)


def sharded_predictor(predict, mesh: Mesh):
  """``predict`` (a ``dense_predictor``) over the devices of ``mesh``, one batch each:
  jit(variables replicated, images [D, B, H, W, 3] sharded over D) -> [D, B, H, W, K].
  Compiled once per image shape for all the devices; each device runs ``predict`` on its
  own batch as one device alone would."""
  return jax.jit(
    jax.shard_map(
      lambda variables, images: predict(variables, images[0])[None],
      mesh=mesh,
      in_specs=(P(), P(parallel.AXIS)),
      out_specs=P(parallel.AXIS),
      check_vma=False,
    )
  )


def num_eval_batches(source, batch_size: int, limit: int | None) -> int:
  """How many batches ``eval_batches`` gives over all shards."""
  count = len(source) if limit is None else min(len(source), int(limit))
  return -(-count // int(batch_size))


def eval_batches(
  source, task, batch_size: int, limit: int | None, shard_index: int = 0, shard_count: int = 1
) -> Iterator[dict]:
  """Unaugmented batches of ``source`` in order (the first ``limit`` examples or all);
  with ``shard_count`` > 1 only batches shard_index, shard_index + shard_count, ..."""
  return pipeline.make_eval_batches(
    source,
    batch_size,
    label_keys=task.label_keys,
    label_specs=task.label_specs(),
    num_batches=None if limit is None else num_eval_batches(source, batch_size, limit),
    shard_index=shard_index,
    shard_count=shard_count,
  )


class Evaluator:
  """Scores a state on the eval split; writes metrics and pictures into ``workdir``."""

  def __init__(
    self, config, model: PixelNet, task, source, workdir: str, writer=None, devices=None
  ):
    """``devices``: the run's devices (``parallel.select_devices``, the default); this
    process evaluates on its own among them."""
    self.config, self.task, self.source = config, task, source
    self.workdir, self.writer = workdir, writer
    self.devices = parallel.local_devices(
      parallel.select_devices(config) if devices is None else devices
    )
    self.predict = dense_predictor(
      model, config.eval.get("chunk_size"), config.eval.get("scale", 1.0)
    )
    self._mesh = Mesh(np.asarray(self.devices), (parallel.AXIS,))
    self._predict_sharded = sharded_predictor(self.predict, self._mesh)
    num_points = int(config.points_per_image)
    self._sample = jax.jit(lambda key, labels: task.sample(key, labels, num_points))
    self.picture_dir = os.path.join(workdir, "pictures")
    self.details: dict[str, list] = {}  # The last run's metric_details.

  def run(self, state, step: int, should_stop=None) -> dict[str, float] | None:
    """The task's metrics of ``state`` on the eval split (written to the metric files).

    ``state`` is a TrainState: device arrays as the train step left them, or host arrays;
    dense predictions run on the devices, metrics on the host. ``should_stop`` (a callable,
    checked before each round of one batch per device; in several processes, stopping if
    it is true in any) cuts the eval short, e.g. on Ctrl-C during training; it then
    returns None and writes nothing. Every process must call it (the same number of
    rounds everywhere) and gets the same metrics.
    """
    variables = jax.tree.map(
      functools.partial(_replicated, sharding=NamedSharding(self._mesh, P())),
      {"params": state.params, "batch_stats": state.batch_stats},
    )
    metric_state = self.task.metric_init()
    num_pictures = int(self.config.eval.num_pictures) if distributed.is_main() else 0
    drawn = 0
    batch_size = int(self.config.eval.batch_size)
    limit = self.config.dataset.get("num_eval_examples")
    processes = jax.process_count()
    mine = eval_batches(self.source, self.task, batch_size, limit, jax.process_index(), processes)
    per_process = -(-num_eval_batches(self.source, batch_size, limit) // processes)
    for _ in range(-(-per_process // len(self.devices))):
      if should_stop is not None and distributed.any_process(should_stop()):
        logging.warning("eval at step %d interrupted; its metrics are dropped.", step)
        return None
      batches = list(itertools.islice(mine, len(self.devices)))
      for batch, prediction in zip(batches, self._predict_round(variables, batches)):
        labels = {k: np.asarray(v) for k, v in self.task.select_labels(batch).items()}
        metric_state = self.task.metric_update(metric_state, prediction, labels)
        for i in range(prediction.shape[0]):
          if drawn >= num_pictures:
            break
          self._picture(step, drawn, batch, labels, prediction, i)
          drawn += 1
    metric_state = functools.reduce(
      self.task.metric_merge, distributed.allgather_object(metric_state)
    )
    metrics = {
      k: float(v) for k, v in self.task.metric_result(metric_state).items() if np.ndim(v) == 0
    }
    self.details = self.task.metric_details(metric_state)
    if self.details and distributed.is_main():
      self._write_details(step, metrics)
    logging.info(
      "eval at step %d: %s", step, "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
    )
    if self.writer is not None:
      self.writer.write(step, "eval", metrics)
    return metrics

  def _write_details(self, step: int, metrics: dict[str, float]):
    """``<workdir>/eval/<split>_step<N>.json``: the scalars and the task's details (atomic)."""
    folder = os.path.join(self.workdir, "eval")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{self.config.dataset.eval_split}_step{step:07d}.json")
    record = {"step": step, "split": self.config.dataset.eval_split, **metrics, **self.details}
    with open(path + ".tmp", "w") as f:
      json.dump(record, f)
    os.replace(path + ".tmp", path)

  def _predict_round(self, variables, batches: list[dict]) -> list[np.ndarray]:
    """Decoded predictions of up to one batch per device, in order: batches of one image
    shape run together (the devices a shape leaves idle repeat its last batch)."""
    shapes = [b["image"].shape for b in batches]
    results = [None] * len(batches)
    for shape in dict.fromkeys(shapes):
      group = [i for i, s in enumerate(shapes) if s == shape]
      images = [batches[i]["image"] for i in group]
      images += images[-1:] * (len(self.devices) - len(images))
      stacked = jax.device_put(np.stack(images), NamedSharding(self._mesh, P(parallel.AXIS)))
      decoded = np.asarray(self.task.decode(self._predict_sharded(variables, stacked)))
      for row, i in enumerate(group):
        results[i] = decoded[row]
    return results

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
  task, crop = config_base.validate_config(config, 1)
  model = models.create_model(config.model, task.num_outputs)
  state = create_train_state(config, model, jax.random.key(int(config.seed)), crop)
  checkpoints = Checkpoints(
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
    restored = checkpoints.restore(host_state(state), step=None if best else step, best=best)
  finally:
    checkpoints.close()
  return task, model, restored


def evaluate_checkpoint(
  config, workdir: str, step: int | None = None, best: bool = False
) -> dict[str, Any]:
  """``pixelnet-eval``: restores a checkpoint of ``workdir`` and runs the dense protocol."""
  task, model, restored = restore_checkpoint(config, workdir, step=step, best=best)
  source = registry.get_source(config.dataset.name, config.dataset.eval_split, config.dataset)
  evaluator = Evaluator(config, model, task, source, workdir)
  metrics = evaluator.run(restored, int(restored.step))
  result = {"step": int(restored.step), "split": config.dataset.eval_split, **metrics}
  if distributed.is_main():
    with open(os.path.join(workdir, f"eval_step{int(restored.step)}.json"), "w") as f:
      json.dump({**result, **evaluator.details}, f, indent=2)
  return result
