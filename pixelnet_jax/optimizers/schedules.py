"""Learning-rate schedules over ``num_steps``; warm-up is added by the caller."""

from __future__ import annotations

import optax

from pixelnet_jax.optimizers.base import SCHEDULES


@SCHEDULES.register("constant")
def constant(opt, base: float, num_steps: int) -> optax.Schedule:
  del opt, num_steps
  return optax.constant_schedule(base)


@SCHEDULES.register("cosine")
def cosine(opt, base: float, num_steps: int) -> optax.Schedule:
  """Cosine decay to 0 over the steps after the warm-up."""
  return optax.cosine_decay_schedule(base, max(1, num_steps - int(opt.warmup_steps)))


@SCHEDULES.register("step")
def step(opt, base: float, num_steps: int) -> optax.Schedule:
  """x ``decay_factor`` at each of ``decay_fractions`` of the run (the original solver)."""
  boundaries = {int(f * num_steps): float(opt.decay_factor) for f in opt.decay_fractions}
  return optax.piecewise_constant_schedule(base, boundaries)
