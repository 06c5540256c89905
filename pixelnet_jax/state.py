"""The training state: one pytree that a checkpoint saves and restores."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax.training import train_state

from pixelnet_jax import models, optimizers


class TrainState(train_state.TrainState):
  """Params, optimizer state, BatchNorm statistics and the step's PRNG key."""

  batch_stats: Any
  rng: jax.Array  # uint32 [2] raw key data (checkpointable)


def init_variables(model, key, image_shape) -> dict:
  """``model.init`` on a dummy batch of one image of ``image_shape`` (H, W), boxes kept."""
  images = jnp.zeros((1, *image_shape, 3), jnp.float32)
  points = jnp.zeros((1, 1, 2), jnp.float32)
  return jax.jit(functools.partial(model.init, train=False))(key, images, points)


def create_train_state(config, model, key, image_shape) -> TrainState:
  """A fresh state: the model initialised at ``image_shape`` (H, W), the optimizer of
  ``config.optimizer`` with weight decay on the parameters the modules declared."""
  key_init, key_train = jax.random.split(key)
  variables = init_variables(model, key_init, image_shape)
  decay = models.decay_mask(variables["params"])
  params = models.unbox(variables["params"])
  tx, _ = optimizers.create_optimizer(config.optimizer, int(config.num_train_steps), decay)
  state = TrainState.create(
    apply_fn=model.apply,
    params=params,
    tx=tx,
    batch_stats=variables.get("batch_stats", {}),
    rng=jax.random.key_data(key_train),
  )
  # An int32 array, as the step returns it (not a weakly typed Python 0), so the state's
  # types are the same before and after a step.
  return state.replace(step=jnp.zeros((), jnp.int32))


def host_state(state):
  """The state as plain host arrays (what a checkpoint stores)."""
  return jax.device_get(state)
