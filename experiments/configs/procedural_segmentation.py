"""Segmentation (10 materials) on the built-in procedural dataset, for a 2-core CPU.

The README's main job: mean IoU >= 0.5 on held-out images (wall time and result:
experiments/results/procedural_segmentation.md).
"""

from pixelnet_jax.config_base import procedural_cpu_config


def get_config():
  c = procedural_cpu_config("segmentation")
  c.task.num_classes = 10
  c.augment.gain_range = None  # Colour is part of a material's identity here.
  return c
