"""Surface normals on the built-in procedural dataset, for a 2-core CPU."""

from pixelnet_jax.config_base import procedural_cpu_config


def get_config():
  c = procedural_cpu_config("normals")
  c.model.tap_activation = "pre"  # The paper read normals before the ReLU.
  return c
