"""What several benchmark scripts share: a first procedural batch at a config's shapes and
XLA's memory figures of a compiled call. Configs load with
``config_base.load_config_file``."""

from __future__ import annotations

import numpy as np

from pixelnet_jax.data import pipeline, registry


def procedural_batch(batch_size: int, crop, task, seed: int = 0) -> dict:
  """Batch 0 of the built-in procedural data at ``crop`` for ``task`` (nothing to
  download), with the task's labels: what a train step of that config takes.

  The renderer draws 64..224 px; the pipeline crops larger images and pads smaller ones
  (padded pixels are not valid). Random access: no reader threads left running to
  compete with the timed steps."""
  size = min(max(max(crop), 64), 224)
  source = registry.get_source(
    "procedural", "train", {"image_size": size, "num_examples": 64, "seed": seed}
  )
  batch = pipeline.train_dataset(
    source, int(batch_size), crop, seed, label_keys=task.label_keys,
    label_specs=task.label_specs(),
  )[0]  # fmt: skip
  return {k: np.asarray(v) for k, v in batch.items() if isinstance(v, np.ndarray)}


def memory_stats(compiled) -> dict | None:
  """XLA's own memory figures (MB) for a compiled call, where the backend has them."""
  try:
    analysis = compiled.memory_analysis()
  except Exception:  # Not every backend implements it.
    return None
  if analysis is None:
    return None
  out = {}
  for field in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"):
    value = getattr(analysis, field, None)
    if value is not None and value >= 0:
      out[field.replace("_in_bytes", "_mb")] = round(value / 2**20, 1)
  return out or None
