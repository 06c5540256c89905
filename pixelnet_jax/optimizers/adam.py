"""Adam (L2 added to the gradient) and AdamW (decoupled weight decay)."""

from __future__ import annotations

import optax

from pixelnet_jax.optimizers.base import OPTIMIZERS

_ADAM_DEFAULTS = dict(b1=0.9, b2=0.999, eps=1e-8)


@OPTIMIZERS.register("adam", defaults=_ADAM_DEFAULTS)
def adam(options, learning_rate, weight_decay: float, decay_mask) -> optax.GradientTransformation:
  chain = []
  if weight_decay > 0:
    chain.append(optax.add_decayed_weights(weight_decay, decay_mask))
  chain.append(
    optax.adam(learning_rate, b1=float(options.b1), b2=float(options.b2), eps=float(options.eps))
  )
  return optax.chain(*chain)


@OPTIMIZERS.register("adamw", defaults=_ADAM_DEFAULTS)
def adamw(options, learning_rate, weight_decay: float, decay_mask) -> optax.GradientTransformation:
  return optax.adamw(
    learning_rate,
    b1=float(options.b1),
    b2=float(options.b2),
    eps=float(options.eps),
    weight_decay=weight_decay,
    mask=decay_mask,
  )
