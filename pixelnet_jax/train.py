"""Training: TrainState, the sharded train step, the loop, checkpoints and logging.

The step is written once, for one shard of the batch, with collectives over the
axis ``'batch'``: it samples pixels inside the step from the state's key (folded
with the step and each image's global index, so the pixels do not depend on the
device layout), reads hypercolumns, applies the head and the task's loss, and
sums the gradients of per-shard losses that are already scaled to the global
mean. ``config.parallel='pmap'`` runs it under ``jax.pmap``;
``config.parallel='mesh'`` under ``jax.jit`` of ``jax.shard_map`` over a
one-axis ``Mesh`` with ``NamedSharding`` inputs. Both run the same function and
give the same numbers.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax.training import train_state
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pixelnet_jax import models, tasks, utils
from pixelnet_jax.data import pipeline, registry

AXIS = "batch"
logging = utils.get_logger()


class TrainState(train_state.TrainState):
  """Params, optimizer state, BatchNorm statistics and the step's PRNG key."""

  batch_stats: Any
  rng: jax.Array  # uint32 [2] raw key data (checkpointable)


# ----------------------------------------------------------------------------
# Config validation: everything that can be checked before compiling.


class ConfigError(ValueError):
  """A config value that cannot work; the message names the key and the fix."""


class DataError(ValueError):
  """Data that does not fit the task (e.g. a class id >= num_classes)."""


def validate_config(config: ml_collections.ConfigDict, num_devices: int):
  """Builds the task and model from the config and checks the step's shapes.

  Returns:
    (task, crop (h, w)).
  """
  try:
    task = tasks.get_task(config.task.name, config.task)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if config.dataset.name not in registry.known_sources():
    raise ConfigError(
      f"Unknown dataset config.dataset.name={config.dataset.name!r}; known: "
      f"{registry.known_sources()}."
    )
  try:
    models.create_model(config.model, task.num_outputs)
  except ValueError as e:
    raise ConfigError(f"config.model: {e}") from e
  crop = pipeline._pair(config.crop_size, "config.crop_size")  # pylint: disable=protected-access
  if int(config.points_per_image) < 1:
    raise ConfigError(f"config.points_per_image must be >= 1, got {config.points_per_image}.")
  if int(config.points_per_image) > crop[0] * crop[1]:
    raise ConfigError(
      f"config.points_per_image={config.points_per_image} is more than the "
      f"{crop[0]}x{crop[1]}={crop[0] * crop[1]} pixels of a crop (config.crop_size); "
      "lower it or raise the crop size."
    )
  if int(config.batch_size) < 1 or int(config.batch_size) % num_devices:
    raise ConfigError(
      f"config.batch_size={config.batch_size} must be a positive multiple of the "
      f"{num_devices} devices in use; change it or set config.num_devices."
    )
  if config.parallel not in ("pmap", "mesh"):
    raise ConfigError(f"config.parallel must be 'pmap' or 'mesh', got {config.parallel!r}.")
  if config.optimizer.name not in ("sgd", "adam", "adamw"):
    raise ConfigError(
      f"config.optimizer.name must be 'sgd', 'adam' or 'adamw', got {config.optimizer.name!r}."
    )
  if config.optimizer.schedule not in ("step", "cosine", "constant"):
    raise ConfigError(
      f"config.optimizer.schedule must be 'step', 'cosine' or 'constant', got "
      f"{config.optimizer.schedule!r}."
    )
  if int(config.num_train_steps) < 1:
    raise ConfigError(f"config.num_train_steps must be >= 1, got {config.num_train_steps}.")
  return task, crop


def select_devices(config) -> list:
  devices = jax.local_devices()
  wanted = config.get("num_devices")
  if wanted is not None:
    if not 1 <= int(wanted) <= len(devices):
      raise ConfigError(f"config.num_devices={wanted} but {len(devices)} local devices exist.")
    devices = devices[: int(wanted)]
  return devices


# ----------------------------------------------------------------------------
# Optimizer and state.


def learning_rate_schedule(opt: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  base = float(opt.learning_rate)
  if opt.schedule == "constant":
    schedule = optax.constant_schedule(base)
  elif opt.schedule == "cosine":
    schedule = optax.cosine_decay_schedule(base, max(1, num_steps - int(opt.warmup_steps)))
  else:
    boundaries = {int(f * num_steps): float(opt.decay_factor) for f in opt.decay_fractions}
    schedule = optax.piecewise_constant_schedule(base, boundaries)
  if int(opt.warmup_steps) > 0:
    warmup = optax.linear_schedule(0.0, base, int(opt.warmup_steps))
    schedule = optax.join_schedules([warmup, schedule], [int(opt.warmup_steps)])
  return schedule


def create_optimizer(opt: ml_collections.ConfigDict, num_steps: int, params):
  schedule = learning_rate_schedule(opt, num_steps)
  mask = utils.weight_decay_mask(params)
  chain = []
  if float(opt.grad_clip_norm) > 0:
    chain.append(optax.clip_by_global_norm(float(opt.grad_clip_norm)))
  if opt.name == "adamw":
    chain.append(optax.adamw(schedule, weight_decay=float(opt.weight_decay), mask=mask))
  else:
    if float(opt.weight_decay) > 0:
      chain.append(optax.add_decayed_weights(float(opt.weight_decay), mask))
    if opt.name == "sgd":
      chain.append(optax.sgd(schedule, momentum=float(opt.momentum)))
    else:
      chain.append(optax.adam(schedule))
  return optax.chain(*chain), schedule


def create_train_state(config, model, key, image_shape) -> TrainState:
  """Initialises the model on a dummy batch of one image at ``image_shape`` (H, W)."""
  key_init, key_train = jax.random.split(key)
  images = jnp.zeros((1, *image_shape, 3), jnp.float32)
  points = jnp.zeros((1, 1, 2), jnp.float32)
  variables = jax.jit(functools.partial(model.init, train=False))(key_init, images, points)
  params = variables["params"]
  tx, _ = create_optimizer(config.optimizer, int(config.num_train_steps), params)
  return TrainState.create(
    apply_fn=model.apply,
    params=params,
    tx=tx,
    batch_stats=variables.get("batch_stats", {}),
    rng=jax.random.key_data(key_train),
  )


# ----------------------------------------------------------------------------
# The step (one shard).


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  model,
  task,
  num_points: int,
  axis_name: str = AXIS,
):
  """One SGD step on this shard's images; collectives over ``axis_name``.

  Args:
    state: the (replicated) TrainState.
    batch: this shard's ``image [b, H, W, 3] float32`` and the task's label keys
      ``[b, H, W, ...]`` (plus ``valid [b, H, W] bool``).
    model: PixelNet built with ``bn_axis_name=axis_name``.
    task: the task value (sampling, targets, loss).
    num_points: pixels per image, static.

  Returns:
    (new state, metrics dict of replicated scalars).
  """
  local_batch = batch["image"].shape[0]
  shard = lax.axis_index(axis_name)
  step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  key_points, key_dropout = jax.random.split(step_key)
  image_index = shard * local_batch + jnp.arange(local_batch)
  image_keys = jax.vmap(lambda i: jax.random.fold_in(key_points, i))(image_index)
  labels = task.select_labels(batch)
  samples = jax.vmap(lambda k, lab: task.sample(k, lab, num_points))(image_keys, labels)
  targets = jax.vmap(task.gather_targets)(labels, samples.coords)
  points = samples.coords.astype(jnp.float32)
  mask = samples.mask
  local_count = mask.sum()
  global_count = jnp.maximum(lax.psum(local_count, axis_name), 1)

  def flat(x):
    return x.reshape((-1,) + x.shape[2:])

  def loss_fn(params):
    outputs, new_vars = model.apply(
      {"params": params, "batch_stats": state.batch_stats},
      batch["image"],
      points,
      train=True,
      rngs={"dropout": jax.random.fold_in(key_dropout, shard)},
      mutable=["batch_stats"],
    )
    local_mean = task.loss(flat(outputs), jax.tree.map(flat, targets), flat(mask))
    # Scaled so that the sum over shards is the mean over every sampled pixel.
    return local_mean * local_count / global_count, new_vars["batch_stats"]

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = lax.psum(grads, axis_name)
  loss = lax.psum(loss, axis_name)
  batch_stats = lax.pmean(batch_stats, axis_name)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  metrics = {
    "loss": loss,
    "grad_norm": jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads))),
    "sampled_fraction": lax.psum(local_count, axis_name)
    / (lax.psum(local_batch, axis_name) * num_points),
  }
  return new_state, metrics


class ParallelStep:
  """Runs ``train_step`` over devices by pmap or by a mesh; host batches in, state out."""

  def __init__(self, config, model_fn: Callable[[str | None], Any], task, devices):
    self.devices = list(devices)
    self.num_devices = len(self.devices)
    self.kind = config.parallel
    model = model_fn(AXIS)
    step = functools.partial(
      train_step, model=model, task=task, num_points=int(config.points_per_image)
    )
    if self.kind == "pmap":
      self._fn = jax.pmap(
        step, axis_name=AXIS, in_axes=(None, 0), out_axes=(None, None), devices=self.devices
      )
    else:
      self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
      self._batch_sharding = NamedSharding(self.mesh, P(AXIS))
      self._state_sharding = NamedSharding(self.mesh, P())
      sharded = jax.shard_map(
        step, mesh=self.mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()), check_vma=False
      )
      self._fn = jax.jit(sharded)

  def put_state(self, state):
    if self.kind == "pmap":
      return state
    return jax.device_put(state, self._state_sharding)

  def __call__(self, state, batch):
    batch = {k: v for k, v in batch.items() if isinstance(v, np.ndarray)}
    if self.kind == "pmap":
      batch = jax.tree.map(lambda x: x.reshape((self.num_devices, -1) + x.shape[1:]), batch)
    else:
      batch = jax.device_put(batch, self._batch_sharding)
    return self._fn(state, batch)


def host_state(state):
  """The state as plain host arrays (what a checkpoint stores)."""
  return jax.device_get(state)


# ----------------------------------------------------------------------------
# Checkpoints, logs, pictures.


class Checkpoints:
  """The last k checkpoints and the best one by the task's main metric (orbax, async)."""

  def __init__(self, workdir: str, keep: int, main_metric: str, mode: str):
    self.main_metric, self.mode = main_metric, mode
    workdir = os.path.abspath(workdir)  # orbax wants absolute paths.
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.last = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), options=options)
    self.best = ocp.CheckpointManager(
      os.path.join(workdir, "best"),
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
    )
    self._best_file = os.path.join(workdir, "best", "best.json")
    self.best_value = None
    if os.path.exists(self._best_file):
      with open(self._best_file) as f:
        self.best_value = json.load(f)["value"]

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state):
    self.last.save(step, args=ocp.args.StandardSave(host_state(state)))

  def restore(self, abstract_state, step: int | None = None, best: bool = False):
    manager = self.best if best else self.last
    step = manager.latest_step() if step is None else step
    if step is None:
      return None
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def maybe_save_best(self, step: int, state, metrics: dict[str, float]) -> bool:
    value = float(metrics[self.main_metric])
    better = self.best_value is None or (
      value > self.best_value if self.mode == "max" else value < self.best_value
    )
    if not np.isfinite(value) or not better:
      return False
    self.best.wait_until_finished()
    self.best.save(step, args=ocp.args.StandardSave(host_state(state)), force=True)
    self.best.wait_until_finished()
    self.best_value = value
    with open(self._best_file, "w") as f:
      json.dump({"step": step, "metric": self.main_metric, "value": value}, f)
    return True

  def wait(self):
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.wait()
    self.last.close()
    self.best.close()


class MetricWriter:
  """metrics.jsonl plus TensorBoard event files (tensorboardX; no TensorFlow)."""

  def __init__(self, workdir: str):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, prefix: str, metrics: dict[str, float]):
    clean = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
    self._jsonl.write(json.dumps({"step": int(step), "split": prefix, **clean}) + "\n")
    self._jsonl.flush()
    for k, v in clean.items():
      self._tb.add_scalar(f"{prefix}/{k}", v, int(step))
    self._tb.flush()

  def image(self, step: int, tag: str, picture: np.ndarray):
    self._tb.add_image(tag, picture, int(step), dataformats="HWC")

  def close(self):
    self._jsonl.close()
    self._tb.close()


class _Preemption:
  """Turns SIGTERM into a flag the loop checks between steps."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread: no handler, no preemption saves.
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


# ----------------------------------------------------------------------------
# The loop.


def _model_fn(config, task):
  return lambda axis_name: models.create_model(
    config.model, task.num_outputs, bn_axis_name=axis_name
  )


def write_config(config, workdir: str):
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from ``workdir`` if it holds checkpoints) and evaluates.

  Returns:
    a summary dict: final step, last train loss, last eval metrics, best value,
    and whether the run stopped early on SIGTERM.
  """
  from pixelnet_jax import evaluate  # pylint: disable=g-import-not-at-top

  devices = select_devices(config)
  task, crop = validate_config(config, len(devices))
  train_source = registry.get_source(
    config.dataset.name, config.dataset.train_split, config.dataset
  )
  eval_source = registry.get_source(config.dataset.name, config.dataset.eval_split, config.dataset)
  os.makedirs(workdir, exist_ok=True)
  write_config(config, workdir)

  model_fn = _model_fn(config, task)
  eval_model = model_fn(None)
  state = create_train_state(config, eval_model, jax.random.key(int(config.seed)), crop)
  checkpoints = Checkpoints(
    workdir, int(config.keep_checkpoints), task.main_metric, task.main_metric_mode
  )
  restored = checkpoints.restore(host_state(state))
  if restored is not None:
    state = restored
    logging.info("Resumed from %s at step %d.", workdir, int(state.step))
  start_step = int(state.step)
  num_steps = int(config.num_train_steps)
  last_step = (
    num_steps if config.get("stop_at_step") is None else min(num_steps, int(config.stop_at_step))
  )

  step_fn = ParallelStep(config, model_fn, task, devices)
  state = step_fn.put_state(state)
  batches = pipeline.make_train_iterator(
    train_source,
    int(config.batch_size),
    crop,
    int(config.seed) + 1000 * jax.process_index(),
    start_step=start_step,
    num_workers=int(config.data_workers),
    num_threads=int(config.data_threads),
    flip=bool(config.augment.flip),
    gain_range=tuple(config.augment.gain_range) if config.augment.gain_range else None,
    label_keys=task.label_keys,
  )
  writer = MetricWriter(workdir)
  evaluator = evaluate.Evaluator(config, eval_model, task, eval_source, workdir, writer)
  schedule = learning_rate_schedule(config.optimizer, num_steps)
  pixels_per_step = int(config.batch_size) * int(config.points_per_image)

  summary = {"start_step": start_step, "preempted": False, "eval": None}
  last_loss = float("nan")
  tick_time, tick_step = time.time(), start_step
  run_start = time.time()
  step = start_step
  try:
    with _Preemption() as preemption:
      while step < last_step:
        batch = next(batches)
        try:
          task.validate_labels(task.select_labels(batch))
        except (KeyError, ValueError) as e:
          checkpoints.wait()
          raise DataError(
            f"Bad training batch for step {step + 1} from dataset {config.dataset.name!r}: {e}"
          ) from e
        new_state, metrics = step_fn(state, batch)
        loss = float(metrics["loss"])
        if not np.isfinite(loss):
          checkpoints.wait()
          raise FloatingPointError(
            f"Loss is {loss} at step {step + 1}; stopping. The last good checkpoint "
            f"(step {checkpoints.latest_step()}) in {workdir}/checkpoints is intact. "
            "Lower config.optimizer.learning_rate or set config.optimizer.grad_clip_norm."
          )
        state = new_state
        step += 1
        last_loss = loss
        if step % int(config.log_every) == 0 or step == num_steps:
          now = time.time()
          rate = (step - tick_step) / max(now - tick_time, 1e-9)
          train_metrics = {k: float(v) for k, v in metrics.items()}
          train_metrics.update(
            steps_per_sec=rate,
            pixels_per_sec=rate * pixels_per_step,
            learning_rate=float(schedule(step - 1)),
          )
          writer.write(step, "train", train_metrics)
          eta = utils.format_duration((num_steps - step) / max(rate, 1e-9))
          logging.info(
            "step %d/%d  loss %.4f  %.2f steps/s  %.0f px/s  ETA %s  (elapsed %s)",
            step,
            num_steps,
            loss,
            rate,
            rate * pixels_per_step,
            eta,
            utils.format_duration(now - run_start),
          )
          tick_time, tick_step = now, step
        if step % int(config.checkpoint_every) == 0 or step == last_step:
          checkpoints.save(step, state)
        if step % int(config.eval_every) == 0 or step == num_steps:
          summary["eval"] = evaluator.run(host_state(state), step)
          checkpoints.maybe_save_best(step, state, summary["eval"])
        if preemption.requested:
          logging.warning("SIGTERM: saving step %d and exiting.", step)
          if checkpoints.latest_step() != step:
            checkpoints.save(step, state)
          summary["preempted"] = True
          break
  finally:
    checkpoints.close()
    writer.close()
    close = getattr(batches, "close", None)
    if close is not None:
      close()
  summary.update(
    step=step, loss=last_loss, best=checkpoints.best_value, seconds=time.time() - run_start
  )
  summary["state"] = host_state(state)
  return summary
