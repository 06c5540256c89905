"""Checkpoints of a work directory: the last k and the best by the task's main metric.

``<workdir>/checkpoints/<step>`` (orbax, asynchronous) and ``<workdir>/best/<step>`` with
``best/best.json`` naming its step, metric and value.

Crash safety (what a SIGKILL at any moment leaves, and how the next run reads it):

- orbax (0.12) writes a step into ``<step>.orbax-checkpoint-tmp``, writes
  ``commit_success.txt`` into it and renames it to ``<step>``: the rename is the commit.
  A kill before the rename leaves the tmp folder, which orbax's step listing ignores; a
  training run (``Checkpoints(..., cleanup=True)``) deletes such leftovers when it starts.
  Read-only users (``pixelnet-eval``) leave them alone: they may be a live run's save.
- A step folder that does not restore (truncated or missing files, no
  ``_CHECKPOINT_METADATA``, a folder copied half-way) is reported with a warning naming
  the step and the first bad file, and the previous step is used. A training run moves
  the bad folder to ``<workdir>/corrupt/<checkpoints|best>/<step>`` so that the step can
  be saved again. No readable step at all is a ``CheckpointError`` naming the folder.
- ``best/best.json`` is written (temp file + ``os.replace``) only after the best save has
  committed, and is the source of truth: a ``best.json`` whose step is not under
  ``best/`` is reported and ignored, and ``restore(best=True)`` restores the step it names.

Several processes (``distributed``): every process makes the same calls in the same order
(orbax saves and restores together, process 0 writing the replicated host state);
process 0 alone writes ``best.json`` and moves unreadable steps aside.

Test hook (keep it out of configs): the environment variable
``PIXELNET_TEST_SLOW_COMMIT=STEP:SECONDS`` delays the commit (the rename) of step ``STEP``
by ``SECONDS``, so that a test can kill a real process in the middle of an asynchronous
save.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time

import numpy as np
import orbax.checkpoint as ocp

from pixelnet_jax import distributed, utils
from pixelnet_jax.errors import CheckpointError
from pixelnet_jax.state import host_state

logging = utils.get_logger()

SLOW_COMMIT_ENV = "PIXELNET_TEST_SLOW_COMMIT"
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax's atomicity_types.TMP_DIR_SUFFIX
STEP_METADATA = "_CHECKPOINT_METADATA"


def _slow_commit_class():
  """The orbax temporary-path class of the ``PIXELNET_TEST_SLOW_COMMIT`` hook (or None)."""
  spec = os.environ.get(SLOW_COMMIT_ENV)
  if not spec:
    return None
  step, seconds = spec.split(":")
  base = ocp.path.atomicity.AtomicRenameTemporaryPath

  class SlowCommit(base):
    async def finalize(self, *args, **kwargs):
      if self.get_final().name == step:
        logging.warning("%s: delaying the commit of %s by %ss.", SLOW_COMMIT_ENV, step, seconds)
        await asyncio.sleep(float(seconds))
      return await super().finalize(*args, **kwargs)

  return SlowCommit


def describe_problem(folder: str, error: Exception | None = None) -> str:
  """What is wrong with checkpoint ``folder``: its first bad file, else ``error``."""
  if not os.path.isdir(folder):
    return f"{folder} is missing"
  if not os.path.exists(os.path.join(folder, STEP_METADATA)):
    return f"{os.path.join(folder, STEP_METADATA)} is missing (an unfinished save?)"
  empty = []
  for root, _, files in sorted(os.walk(folder)):
    for name in sorted(files):
      path = os.path.join(root, name)
      if os.path.getsize(path) == 0:
        empty.append(path)
      elif name in (STEP_METADATA, "_METADATA"):
        try:
          with open(path) as f:
            json.load(f)
        except (OSError, ValueError) as e:
          return f"{path} is not valid JSON ({e})"
  if empty:
    more = f" and {len(empty) - 1} more file(s)" if len(empty) > 1 else ""
    return f"{empty[0]} is empty (0 bytes){more}"
  if error is not None:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line[:300]}"
  return "unreadable"


def _write_json_atomically(path: str, value):
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


class Checkpoints:
  """The last k checkpoints and the best one by the task's main metric (orbax, async).

  ``cleanup=True`` (the training run, the one writer of the work directory) deletes
  unfinished saves left by a killed run and moves unreadable steps aside on restore.
  """

  def __init__(self, workdir: str, keep: int, main_metric: str, mode: str, cleanup: bool = False):
    self.main_metric, self.mode = main_metric, mode
    self.workdir = os.path.abspath(workdir)  # orbax wants absolute paths.
    self.cleanup = cleanup
    self.last = self._manager("checkpoints", keep)
    self.best = self._manager("best", 1)
    self._best_file = os.path.join(self.workdir, "best", "best.json")
    self.best_value = None
    self.best_step = None
    self._read_best_file()

  def _manager(self, folder: str, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep,
      create=True,
      cleanup_tmp_directories=self.cleanup,
      temporary_path_class=_slow_commit_class(),
    )
    return ocp.CheckpointManager(os.path.join(self.workdir, folder), options=options)

  def _read_best_file(self):
    if not os.path.exists(self._best_file):
      return
    try:
      with open(self._best_file) as f:
        record = json.load(f)
      step, value = int(record["step"]), float(record["value"])
    except (OSError, ValueError, KeyError, TypeError) as e:
      logging.warning("%s is unreadable (%s); ignoring it.", self._best_file, e)
      return
    if step not in self.best.all_steps():
      logging.warning(
        "%s names step %d, which is not under %s (an interrupted save?); ignoring it: "
        "the next eval sets a new best.",
        self._best_file,
        step,
        os.path.dirname(self._best_file),
      )
      return
    self.best_step, self.best_value = step, value

  def latest_step(self) -> int | None:
    return self.last.latest_step()

  def save(self, step: int, state):
    self.last.save(step, args=ocp.args.StandardSave(host_state(state)))

  def restore(self, abstract_state, step: int | None = None, best: bool = False):
    """The state of ``step`` (default: the newest readable step; with ``best``, the step
    ``best.json`` names), or None when there is no checkpoint.

    A newest step that does not restore is reported and the previous one is used; no
    readable step at all, or an explicit ``step`` that does not restore, raises
    ``CheckpointError``.
    """
    manager, folder = (self.best, "best") if best else (self.last, "checkpoints")
    directory = os.path.join(self.workdir, folder)
    if step is None and best and self.best_step is not None:
      step = self.best_step
    if step is not None:
      try:
        return self._restore_step(manager, step, abstract_state)
      except Exception as e:  # orbax and tensorstore raise many types; all mean "unreadable".
        raise CheckpointError(
          f"Checkpoint step {step} in {directory} cannot be restored: "
          f"{describe_problem(os.path.join(directory, str(step)), e)}."
        ) from e
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
      return None
    bad = []
    for candidate in steps:
      try:
        restored = self._restore_step(manager, candidate, abstract_state)
      except Exception as e:  # As above: report, then try the previous step.
        problem = describe_problem(os.path.join(directory, str(candidate)), e)
        logging.warning(
          "Checkpoint step %d in %s is unreadable: %s; trying the previous one.",
          candidate,
          directory,
          problem,
        )
        bad.append((candidate, problem))
        continue
      if bad:
        logging.warning("Using step %d of %s.", candidate, directory)
        if self.cleanup:
          self._move_aside(manager, folder, [s for s, _ in bad])
      return restored
    raise CheckpointError(
      f"No readable checkpoint in {directory}: "
      + "; ".join(f"step {s}: {p}" for s, p in bad)
      + ". If these files cannot be recovered, move the folder away (or use a new --workdir) "
      "to start over."
    )

  @staticmethod
  def _restore_step(manager, step, abstract_state):
    # orbax restores the arrays even without the step's metadata, but a step folder
    # without a readable _CHECKPOINT_METADATA was not written by a finished save.
    metadata = os.path.join(str(manager.directory), str(step), STEP_METADATA)
    try:
      with open(metadata) as f:
        json.load(f)
    except (OSError, ValueError) as e:
      raise CheckpointError(f"{metadata}: {e}") from e
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def _move_aside(self, manager, folder: str, steps: list[int]):
    if distributed.is_main():
      target_root = os.path.join(self.workdir, "corrupt", folder)
      os.makedirs(target_root, exist_ok=True)
      for step in steps:
        target = os.path.join(target_root, str(step))
        if os.path.exists(target):
          target = f"{target}.{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.move(os.path.join(self.workdir, folder, str(step)), target)
        logging.warning("Moved unreadable checkpoint step %d to %s.", step, target)
    distributed.sync("pixelnet_move_aside")  # Every process then lists the same steps.
    manager.reload()

  def maybe_save_best(self, step: int, state, metrics: dict[str, float]) -> bool:
    value = float(metrics[self.main_metric])
    better = self.best_value is None or (
      value > self.best_value if self.mode == "max" else value < self.best_value
    )
    if not np.isfinite(value) or not better:
      return False
    self.best.wait_until_finished()
    self.best.save(step, args=ocp.args.StandardSave(host_state(state)), force=True)
    # best.json follows the committed save, never precedes it (see the module docstring).
    self.best.wait_until_finished()
    self.best_step, self.best_value = step, value
    if distributed.is_main():
      _write_json_atomically(
        self._best_file, {"step": step, "metric": self.main_metric, "value": value}
      )
    return True

  def wait(self):
    self.last.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.wait()
    self.last.close()
    self.best.close()
