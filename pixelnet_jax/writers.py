"""Metrics of a run: ``metrics.jsonl`` (one JSON object per log or eval) and TensorBoard
event files (tensorboardX, no TensorFlow)."""

from __future__ import annotations

import json
import os

import numpy as np
from tensorboardX import SummaryWriter


class MetricWriter:
  """metrics.jsonl plus TensorBoard event files (tensorboardX; no TensorFlow).

  ``active=False`` (the processes other than 0 of a multi-process run) writes nothing.
  ``resume_step``: the step a resumed run restarts from. Rows a killed run logged after
  its last checkpoint (step > resume_step) are dropped from metrics.jsonl (the file is
  rewritten atomically) and purged from TensorBoard, so each step appears once.
  """

  def __init__(self, workdir: str, active: bool = True, resume_step: int | None = None):
    self.active = active
    if not active:
      return
    path = os.path.join(workdir, "metrics.jsonl")
    if resume_step is not None and os.path.exists(path):
      drop_rows_after(path, int(resume_step))
    self._jsonl = open(path, "a")
    self._tb = SummaryWriter(
      os.path.join(workdir, "tensorboard"),
      purge_step=None if resume_step is None else int(resume_step) + 1,
    )

  def write(self, step: int, prefix: str, metrics: dict[str, float]):
    if not self.active:
      return
    clean = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0}
    self._jsonl.write(json.dumps({"step": int(step), "split": prefix, **clean}) + "\n")
    self._jsonl.flush()
    for k, v in clean.items():
      self._tb.add_scalar(f"{prefix}/{k}", v, int(step))
    self._tb.flush()

  def image(self, step: int, tag: str, picture: np.ndarray):
    if not self.active:
      return
    self._tb.add_image(tag, picture, int(step), dataformats="HWC")

  def close(self):
    if not self.active:
      return
    self._jsonl.close()
    self._tb.close()


def drop_rows_after(path: str, step: int) -> int:
  """Rewrites the JSONL file at ``path`` without its rows of steps above ``step`` (and a
  torn last line); returns how many rows were dropped. Atomic: a crash leaves either file."""
  kept, dropped = [], 0
  with open(path) as f:
    for line in f:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # A line cut short by a kill.
        dropped += 1
        continue
      if int(row.get("step", 0)) > step:
        dropped += 1
      else:
        kept.append(json.dumps(row) + "\n")
  if dropped:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(kept)
    os.replace(tmp, path)
  return dropped
