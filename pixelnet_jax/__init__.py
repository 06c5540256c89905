"""pixelnet_jax: PixelNet (sampled-pixel hypercolumns + MLP heads) in JAX/Flax.

The pure building blocks other JAX projects import are
``pixelnet_jax.sampling`` and ``pixelnet_jax.hypercolumn``.
"""

__version__ = "0.1.0"
