"""SGD with momentum: the original PixelNet solver."""

from __future__ import annotations

import optax

from pixelnet_jax.optimizers.base import OPTIMIZERS


@OPTIMIZERS.register("sgd", defaults=dict(momentum=0.9, nesterov=False))
def sgd(options, learning_rate, weight_decay: float, decay_mask) -> optax.GradientTransformation:
  """Decoupled L2 (``add_decayed_weights`` on the declared parameters), then SGD."""
  chain = []
  if weight_decay > 0:
    chain.append(optax.add_decayed_weights(weight_decay, decay_mask))
  chain.append(
    optax.sgd(learning_rate, momentum=float(options.momentum), nesterov=bool(options.nesterov))
  )
  return optax.chain(*chain)
