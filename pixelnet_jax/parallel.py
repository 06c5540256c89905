"""Running the per-shard step over devices: ``jax.pmap`` or a ``jit`` + ``shard_map`` mesh.

``config.parallel='pmap'`` runs ``step.train_step`` under ``jax.pmap``;
``config.parallel='mesh'`` under ``jax.jit`` of ``jax.shard_map`` over a one-axis
``Mesh`` with ``NamedSharding`` inputs. Both run the same function and give the
same numbers.

In a multi-process run (``distributed``) the devices are every process's, in process
order; each process passes its share of the global batch (its slice of consecutive
images), so device i of the step holds the same images whatever the process layout. The
mesh assembles the global batch with ``jax.make_array_from_process_local_data``.
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
  """The devices the step runs on: every process's local devices (all, or the first
  ``config.num_devices`` of each), ordered by process. One process: its local devices."""
  local = jax.local_devices()
  wanted = config.get("num_devices")
  if wanted is not None and not 1 <= int(wanted) <= len(local):
    raise ConfigError(f"config.num_devices={wanted} but {len(local)} local devices exist.")
  count = len(local) if wanted is None else int(wanted)
  if jax.process_count() == 1:
    return local[:count]
  by_process = {}
  for device in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
    by_process.setdefault(device.process_index, []).append(device)
  return [d for p in sorted(by_process) for d in by_process[p][:count]]


def local_devices(devices) -> list:
  """This process's devices among ``devices`` (in their order)."""
  return [d for d in devices if d.process_index == jax.process_index()]


class ParallelStep:
  """Runs ``train_step`` over devices by pmap or by a mesh; host batches in, state out."""

  def __init__(self, config, model, task, devices):
    """``model``: PixelNet built with ``bn_axis_name=AXIS`` (BatchNorm over the shards)."""
    self.devices = list(devices)
    self.num_devices = len(self.devices)
    self.num_local_devices = len(local_devices(self.devices))
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
    if jax.process_count() == 1:
      return jax.device_put(state, self._state_sharding)
    # Every process holds the same state: each gives its copy for its own devices. (pmap
    # too: jax 0.10's pmap loses a donated state that it has to reshard across processes.)
    return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(
        self._state_sharding, np.asarray(x), np.shape(x)
      ),
      state,
    )

  def __call__(self, state, batch):
    """(new state, metrics on the device). ``batch``: this process's share of the global
    batch (all of it in one process). ``state`` is donated: its buffers may be reused for
    the new state, so the caller must not use it (nor hold views of it) afterwards."""
    return self._fn(state, self._device_batch(batch))

  def lower(self, state, batch):
    """The step lowered for these arguments (nothing runs, nothing is donated): for
    ``.compile().memory_analysis()`` or the HLO, e.g. in benchmarks."""
    return self._fn.lower(state, self._device_batch(batch))

  def _device_batch(self, batch):
    """The host batch as the mapped function takes it: [devices, b, ...] under pmap, a
    global array sharded over the mesh otherwise."""
    batch = {k: v for k, v in batch.items() if isinstance(v, np.ndarray)}
    if self.kind == "pmap":
      return jax.tree.map(lambda x: x.reshape((self.num_local_devices, -1) + x.shape[1:]), batch)
    processes = jax.process_count()
    return {
      k: jax.make_array_from_process_local_data(
        self._batch_sharding, x, (x.shape[0] * processes,) + x.shape[1:]
      )
      for k, x in batch.items()
    }
