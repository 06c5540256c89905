"""The parallel step compiles once: its first call sees the state in the layout every later
call gets (replicated over the devices), under pmap and under the mesh."""

import logging

import jax
import pytest
import tiny_config

from pixelnet_jax import config_base, models, parallel
from pixelnet_jax.data import pipeline, registry
from pixelnet_jax.state import create_train_state


class _Compiles(logging.Handler):
  def __init__(self):
    super().__init__(logging.DEBUG)
    self.messages = []

  def emit(self, record):
    message = record.getMessage()
    if message.startswith("Compiling "):
      self.messages.append(message[:120])


@pytest.mark.parametrize("kind", ["pmap", "mesh"])
def test_step_compiles_on_its_first_call_only(kind):
  c = tiny_config.get_config("segmentation")
  c.parallel = kind
  c.num_devices = 2
  task, crop = config_base.validate_config(c, 2)
  state = create_train_state(c, models.create_model(c.model, 10), jax.random.key(0), crop)
  step = parallel.ParallelStep(
    c, models.create_model(c.model, 10, bn_axis_name=parallel.AXIS), task, jax.devices()[:2]
  )
  source = registry.get_source("procedural", "train", c.dataset)
  batches = pipeline.make_train_iterator(
    source, 8, crop, 0, label_keys=task.label_keys, label_specs=task.label_specs()
  )
  state = step.put_state(state)
  state, _ = step(state, next(batches))
  compiles = _Compiles()
  logger = logging.getLogger("jax")
  logger.addHandler(compiles)
  try:
    with jax.log_compiles(True):
      for _ in range(3):
        state, metrics = step(state, next(batches))
      jax.block_until_ready(metrics)
  finally:
    logger.removeHandler(compiles)
    batches.close()
  assert compiles.messages == [], compiles.messages
  # The check can fail: the same handler sees the compile of a new shape.
  logger.addHandler(compiles)
  try:
    with jax.log_compiles(True):
      jax.jit(lambda x: x * 3)(jax.numpy.ones(7))
  finally:
    logger.removeHandler(compiles)
  assert compiles.messages
