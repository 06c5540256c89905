"""Split-level metrics. ``boundaries`` (the BSDS benchmark) is imported on demand."""

from pixelnet_jax.metrics import normals, segmentation

__all__ = ["normals", "segmentation"]
