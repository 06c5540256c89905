"""The training loop: resume, step, log, checkpoint, evaluate, stop cleanly.

Everything it composes lives in its own module: the config checks
(``config_base.validate_config``), the state (``state``), the per-shard step
(``step``) and its device mapping (``parallel``), checkpoints (``checkpoints``),
metric files (``writers``) and dense evaluation (``evaluate``).

Several processes (``distributed``) run this same loop in lockstep: each reads its share
of every global batch, process 0 alone writes files, and a signal to any of them stops
all of them after the same step.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from pixelnet_jax import config_base, distributed, evaluate, models, optimizers, parallel, utils
from pixelnet_jax.checkpoints import Checkpoints
from pixelnet_jax.data import pipeline, registry
from pixelnet_jax.errors import ConfigError, DataError
from pixelnet_jax.state import create_train_state, host_state
from pixelnet_jax.writers import MetricWriter

logging = utils.get_logger()


class Preemption:
  """Turns SIGTERM and SIGINT (Ctrl-C) into a flag the loop checks between steps.

  The loop then saves the step it reached and returns normally (exit status 0). The flag
  is read after every step and between eval batches (an eval in progress is dropped); in
  a multi-process run the processes agree on it one step later (``distributed.StopVote``)
  and all stop after the same step. A
  step being compiled cannot be interrupted, so a signal then takes effect when that step
  ends. A second signal exits at once (status 128 + signal number) without a traceback;
  the last committed checkpoint stays usable (see ``checkpoints``).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self.signal_name = None
    self._previous = {}

  def __enter__(self):
    for signum in self.SIGNALS:
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # Not the main thread: no handler, no preemption saves.
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.requested:
      os.write(2, f"\n{name} again: exiting now without saving.\n".encode())
      os._exit(128 + signum)
    self.requested, self.signal_name = True, name
    os.write(2, f"\n{name}: saving at the end of this step (again to quit at once).\n".encode())

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}


def _validate_batch(task, batch):
  """The task's label checks on one training batch; runs in the data workers."""
  task.validate_labels(task.select_labels(batch))


def _finite_guard():
  """The device-side NaN/Inf guard: every loss so far finite, and the first bad one."""
  return {"finite": jnp.array(True), "step": jnp.array(0, jnp.int32), "loss": jnp.array(0.0)}


# How many dispatched steps the host may run ahead of the device (see the loop).
STEPS_AHEAD = 2


@jax.jit
def _update_guard(guard, loss, step):
  """Folds one step's loss into the guard on the device (no host round trip)."""
  ok = jnp.isfinite(loss)
  first_bad = guard["finite"] & ~ok
  return {
    "finite": guard["finite"] & ok,
    "step": jnp.where(first_bad, jnp.asarray(step, jnp.int32), guard["step"]),
    "loss": jnp.where(first_bad, loss.astype(jnp.float32), guard["loss"]),
  }


def write_config(config, workdir: str):
  path = os.path.join(workdir, "config.json")
  with open(path + ".tmp", "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(path + ".tmp", path)  # A kill mid-write leaves the old file whole.


def check_config_drift(config, workdir: str):
  """Refuses (ConfigError) to resume ``workdir`` with a config that changes the model, task,
  data or optimizer (``config_base.config_drift``); reads the workdir, writes nothing."""
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  saved = os.path.join(workdir, "config.json")
  if not os.path.isdir(checkpoint_dir) or not os.path.exists(saved):
    return
  if not any(name.isdigit() for name in os.listdir(checkpoint_dir)):
    return  # Nothing to resume.
  try:
    with open(saved) as f:
      old = json.load(f)
  except (OSError, ValueError) as e:
    logging.warning("%s is unreadable (%s); not checking the config against it.", saved, e)
    return
  drift = config_base.config_drift(old, config)
  if drift:
    raise ConfigError(config_base.format_drift(drift, saved))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from ``workdir`` if it holds checkpoints) and evaluates.

  Returns:
    a summary dict: final step, last train loss, last eval metrics, best value,
    and whether the run stopped early on SIGTERM or SIGINT (``preempted``, ``signal``).
  """
  devices = parallel.select_devices(config)
  task, crop = config_base.validate_config(config, len(devices))
  check_config_drift(config, workdir)
  train_source = registry.get_source(
    config.dataset.name, config.dataset.train_split, config.dataset
  )
  eval_source = registry.get_source(config.dataset.name, config.dataset.eval_split, config.dataset)
  os.makedirs(workdir, exist_ok=True)
  if distributed.is_main():
    write_config(config, workdir)

  eval_model = models.create_model(config.model, task.num_outputs)
  state = create_train_state(config, eval_model, jax.random.key(int(config.seed)), crop)
  checkpoints = Checkpoints(
    workdir, int(config.keep_checkpoints), task.main_metric, task.main_metric_mode, cleanup=True
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

  step_model = models.create_model(config.model, task.num_outputs, bn_axis_name=parallel.AXIS)
  step_fn = parallel.ParallelStep(config, step_model, task, devices)
  state = step_fn.put_state(state)
  batches = pipeline.make_train_iterator(
    train_source,
    int(config.batch_size),
    crop,
    # The global batch of step k depends on the seed and k only, never on the processes.
    int(config.seed),
    start_step=start_step,
    num_workers=int(config.data_workers),
    num_threads=int(config.data_threads),
    flip=bool(config.augment.flip),
    gain_range=tuple(config.augment.gain_range) if config.augment.gain_range else None,
    scale_range=tuple(config.augment.scale_range) if config.augment.get("scale_range") else None,
    rotate=bool(config.augment.get("rotate", False)),
    label_keys=task.label_keys,
    label_specs=task.label_specs(),
    validate=functools.partial(_validate_batch, task),
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  # Rows an earlier attempt logged past the step this run starts from are dropped.
  writer = MetricWriter(workdir, active=distributed.is_main(), resume_step=start_step)
  evaluator = evaluate.Evaluator(
    config, eval_model, task, eval_source, workdir, writer, devices=devices
  )
  schedule = optimizers.learning_rate_schedule(config.optimizer, num_steps)
  points = crop[0] * crop[1] if task.dense else int(config.points_per_image)
  pixels_per_step = int(config.batch_size) * points

  summary = {"start_step": start_step, "preempted": False, "eval": None}
  last_loss = float("nan")
  tick_time, tick_step = time.time(), start_step
  run_start = time.time()
  step = start_step
  # Metrics stay on the device: the last step's, and a guard that folds in every step's
  # loss; both are fetched only at log, checkpoint and eval steps (no per-step stall).
  metrics, guard = None, _finite_guard()
  in_flight, host_wait = collections.deque(), 0.0
  stop_vote = distributed.StopVote()

  def check_finite():
    """Raises if any loss since the start was NaN/Inf: before any save, eval or log."""
    fetched = jax.device_get(guard)
    if not bool(fetched["finite"]):
      checkpoints.wait()
      raise FloatingPointError(
        f"Loss is {float(fetched['loss'])} at step {int(fetched['step'])}; stopping. The last "
        f"good checkpoint (step {checkpoints.latest_step()}) in {workdir}/checkpoints is "
        "intact. Lower config.optimizer.learning_rate or set config.optimizer.grad_clip_norm."
      )

  try:
    with Preemption() as preemption:
      while step < last_step:
        try:  # The task's label checks run in the data workers (validate=).
          batch = next(batches)
        except (KeyError, ValueError) as e:
          checkpoints.wait()
          raise DataError(
            f"Bad training batch for step {step + 1} from dataset {config.dataset.name!r}: {e}"
          ) from e
        state, metrics = step_fn(state, batch)  # the old state is donated
        # Bounded run-ahead: wait for the step dispatched STEPS_AHEAD steps ago, never for
        # this one, so the device always has the next step queued while the host (and the
        # data workers on the same cores) do not pile up batches for hundreds of steps.
        # The time spent waiting here is the evidence that the device, not Python, sets the
        # pace: logged as host_wait_fraction (near 1: the device is never starved).
        in_flight.append(metrics["loss"])
        if len(in_flight) > STEPS_AHEAD:
          wait_start = time.perf_counter()
          in_flight.popleft().block_until_ready()
          host_wait += time.perf_counter() - wait_start
        step += 1
        guard = _update_guard(guard, metrics["loss"], step)
        if (
          step % int(config.log_every) == 0
          or step % int(config.checkpoint_every) == 0
          or step % int(config.eval_every) == 0
          or step in (num_steps, last_step)
        ):
          check_finite()
        if step % int(config.log_every) == 0 or step == num_steps:
          now = time.time()
          rate = (step - tick_step) / max(now - tick_time, 1e-9)
          train_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
          loss = train_metrics["loss"]
          train_metrics.update(
            steps_per_sec=rate,
            pixels_per_sec=rate * pixels_per_step,
            learning_rate=float(schedule(step - 1)),
            host_wait_fraction=host_wait / max(now - tick_time, 1e-9),
          )
          host_wait = 0.0
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
        eval_cut = False
        if step % int(config.eval_every) == 0 or step == num_steps:
          eval_metrics = evaluator.run(  # on the devices, as is
            state, step, should_stop=lambda: preemption.requested
          )
          eval_cut = eval_metrics is None  # A signal cut it short (in every process).
          if not eval_cut:
            summary["eval"] = eval_metrics
            checkpoints.maybe_save_best(step, state, eval_metrics)
        # The same answer in every process.
        if stop_vote.update(preemption.requested) or eval_cut:
          check_finite()
          name = preemption.signal_name or "a signal to another process"
          logging.warning("%s: saving step %d and exiting.", name, step)
          if checkpoints.latest_step() != step:
            checkpoints.save(step, state)
          summary.update(preempted=True, signal=name)
          break
  finally:
    checkpoints.close()
    writer.close()
    close = getattr(batches, "close", None)
    if close is not None:
      close()
  if metrics is not None:
    last_loss = float(metrics["loss"])
  summary.update(
    step=step, loss=last_loss, best=checkpoints.best_value, seconds=time.time() - run_start
  )
  summary["state"] = host_state(state)
  return summary
