"""Paper-sized PixelNet (VGG-16, 224^2, 5 images x 2,000 pixels, SGD 1e-3 with step decay).

Usage: --config experiments/configs/default.py[:segmentation|normals|edges]
"""

from pixelnet_jax.config_base import paper_config


def get_config(task: str = "segmentation"):
  return paper_config(task or "segmentation")
