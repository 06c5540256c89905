"""Edges (exact object boundaries) on the built-in procedural dataset, for a 2-core CPU."""

from pixelnet_jax.config_base import procedural_cpu_config


def get_config():
  c = procedural_cpu_config("edges")
  c.task.positive_fraction = 0.5
  return c
