"""Optimizers and schedules from ``config.optimizer``.

``config.optimizer.name`` picks a registered optimizer (``OPTIMIZERS``) whose options
are ``config.optimizer.<name>``; ``config.optimizer.schedule`` picks a registered
schedule (``SCHEDULES``). The fields every optimizer shares are ``COMMON_DEFAULTS``.
Weight decay applies to the parameters the model declared (``models.decay_mask``).
"""

from __future__ import annotations

import copy

import ml_collections
import optax

from pixelnet_jax.optimizers.base import OPTIMIZERS, SCHEDULES

COMMON_DEFAULTS = dict(
  name="sgd",  # a name in OPTIMIZERS; its options are config.optimizer.<name>
  learning_rate=1e-3,
  weight_decay=5e-4,  # on the parameters the modules declared (kernels), not biases or BN
  schedule="step",  # a name in SCHEDULES
  decay_fractions=(0.6, 0.85),  # 'step': x decay_factor at these fractions of the run
  decay_factor=0.1,
  warmup_steps=0,  # linear warm-up from 0, before any schedule
  grad_clip_norm=0.0,  # 0 disables
)


def default_optimizer_config() -> ml_collections.ConfigDict:
  """The shared fields plus one sub-dict of options per registered optimizer."""
  c = ml_collections.ConfigDict(copy.deepcopy(COMMON_DEFAULTS))  # No shared placeholders.
  for name in OPTIMIZERS.names():
    c[name] = OPTIMIZERS.defaults(name)
  return c


def learning_rate_schedule(opt: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """The schedule ``opt.schedule`` over ``num_steps``, after ``opt.warmup_steps`` of warm-up."""
  base = float(opt.learning_rate)
  schedule = SCHEDULES.get(opt.schedule)(opt, base, num_steps)
  if int(opt.warmup_steps) > 0:
    warmup = optax.linear_schedule(0.0, base, int(opt.warmup_steps))
    schedule = optax.join_schedules([warmup, schedule], [int(opt.warmup_steps)])
  return schedule


def create_optimizer(opt: ml_collections.ConfigDict, num_steps: int, decay_mask):
  """(optax transformation, schedule) for ``config.optimizer``.

  Args:
    opt: ``config.optimizer``.
    num_steps: the run's length (the schedule spans it).
    decay_mask: bool tree over the parameters, True where weight decay applies.
  """
  schedule = learning_rate_schedule(opt, num_steps)
  options = OPTIMIZERS.config(opt.name, opt.get(opt.name), where=f"config.optimizer.{opt.name}")
  chain = []
  if float(opt.grad_clip_norm) > 0:
    chain.append(optax.clip_by_global_norm(float(opt.grad_clip_norm)))
  chain.append(OPTIMIZERS.get(opt.name)(options, schedule, float(opt.weight_decay), decay_mask))
  return optax.chain(*chain), schedule


__all__ = [
  "COMMON_DEFAULTS",
  "OPTIMIZERS",
  "SCHEDULES",
  "create_optimizer",
  "default_optimizer_config",
  "learning_rate_schedule",
]
