"""Checkpoints of a work directory: the last k and the best by the task's main metric.

``<workdir>/checkpoints/<step>`` (orbax, asynchronous) and ``<workdir>/best/<step>`` with
``best/best.json`` naming its step, metric and value.
"""

from __future__ import annotations

import json
import os

import numpy as np
import orbax.checkpoint as ocp

from pixelnet_jax.state import host_state


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
