"""The optimizer and learning-rate schedule registries.

An optimizer entry is ``make(options, learning_rate, weight_decay, decay_mask) ->
optax.GradientTransformation`` with its options in ``config.optimizer.<name>``; a
schedule entry is ``make(config.optimizer, base_lr, num_steps) -> optax.Schedule``
(warm-up is added around any schedule). A module of this package is one entry or more.
"""

from __future__ import annotations

from pixelnet_jax.registry import Registry

OPTIMIZERS = Registry("optimizer", "config.optimizer.name", package="pixelnet_jax.optimizers")
SCHEDULES = Registry("schedule", "config.optimizer.schedule", package="pixelnet_jax.optimizers")
