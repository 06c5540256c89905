"""Running the per-shard step over devices: ``jax.pmap`` or a ``jit`` + ``shard_map`` mesh.

``config.parallel='pmap'`` runs ``step.train_step`` under ``jax.pmap``;
``config.parallel='mesh'`` under ``jax.jit`` of ``jax.shard_map`` over a one-axis
``Mesh`` with ``NamedSharding`` inputs. Both run the same function and give the
same numbers.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pixelnet_jax.errors import ConfigError
from pixelnet_jax.step import AXIS, train_step


def select_devices(config) -> list:
  """The local devices the step runs on: all, or the first ``config.num_devices``."""
  devices = jax.local_devices()
  wanted = config.get("num_devices")
  if wanted is not None:
    if not 1 <= int(wanted) <= len(devices):
      raise ConfigError(f"config.num_devices={wanted} but {len(devices)} local devices exist.")
    devices = devices[: int(wanted)]
  return devices


class ParallelStep:
  """Runs ``train_step`` over devices by pmap or by a mesh; host batches in, state out."""

  def __init__(self, config, model, task, devices):
    """``model``: PixelNet built with ``bn_axis_name=AXIS`` (BatchNorm over the shards)."""
    self.devices = list(devices)
    self.num_devices = len(self.devices)
    self.kind = config.parallel
    step = functools.partial(
      train_step, model=model, task=task, num_points=int(config.points_per_image)
    )
    # Both kinds hold the state replicated on a one-axis mesh over the devices: that is
    # the layout the step returns it in, so the first call compiles the step for the same
    # inputs as every later one (a single-device first state made pmap compile twice).
    self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
    self._state_sharding = NamedSharding(self.mesh, P())
    if self.kind == "pmap":
      self._fn = jax.pmap(
        step,
        axis_name=AXIS,
        in_axes=(None, 0),
        out_axes=(None, None),
        devices=self.devices,
        donate_argnums=(0,),
      )
    else:
      self._batch_sharding = NamedSharding(self.mesh, P(AXIS))
      sharded = jax.shard_map(
        step, mesh=self.mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()), check_vma=False
      )
      self._fn = jax.jit(sharded, donate_argnums=(0,))

  def put_state(self, state):
    """``state`` replicated over the devices, as the step takes and returns it."""
    return jax.device_put(state, self._state_sharding)

  def __call__(self, state, batch):
    """(new state, metrics on the device). ``state`` is donated: its buffers may be reused
    for the new state, so the caller must not use it (nor hold views of it) afterwards."""
    batch = {k: v for k, v in batch.items() if isinstance(v, np.ndarray)}
    if self.kind == "pmap":
      batch = jax.tree.map(lambda x: x.reshape((self.num_devices, -1) + x.shape[1:]), batch)
    else:
      batch = jax.device_put(batch, self._batch_sharding)
    return self._fn(state, batch)
