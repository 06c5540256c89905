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
  """

  def __init__(self, workdir: str, active: bool = True):
    self.active = active
    if not active:
      return
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

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
