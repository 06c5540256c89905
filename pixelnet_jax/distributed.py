"""Several processes on ``jax.distributed``: start-up, who writes, agreeing across processes.

A multi-process run is the same program started once per host (or per GPU node);
``initialize`` joins them before any JAX computation. Afterwards ``jax.devices()`` lists
every process's devices, collectives in the step run over all of them, and:

- ``config.batch_size`` is global: each process reads only its share of each batch
  (``data.pipeline.make_train_iterator(process_index=, process_count=)``);
- process 0 (``is_main``) alone writes logs, metrics, pictures, ``config.json`` and
  ``best.json``; orbax writes a checkpoint together from every process;
- ``StopVote`` makes a signal to any one process stop all of them at the same step.

On CPU the processes talk through the gloo collectives (set here before the CPU client
exists). Every function works unchanged in a single process.
"""

from __future__ import annotations

import importlib.util
import logging as std_logging
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pixelnet_jax import utils
from pixelnet_jax.errors import ConfigError

logging = utils.get_logger()

FLAGS_HELP = "--coordinator_address=HOST:PORT --num_processes=N --process_id=I"


def detected_cluster() -> str | None:
  """The cluster whose environment ``jax.distributed.initialize()`` reads by itself, when
  this process runs in one with several processes: 'slurm', 'openmpi' or 'tpu'; else None.

  Read from environment variables only (nothing is queried): a SLURM step or an Open MPI
  job of more than one task, or a Cloud TPU VM (libtpu installed; a single-host one then
  runs as one process of one).
  """
  env = os.environ
  if "SLURM_JOB_ID" in env and int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", 1))) > 1:
    return "slurm"
  if "OMPI_MCA_orte_hnp_uri" in env and int(env.get("OMPI_COMM_WORLD_SIZE", 1)) > 1:
    return "openmpi"
  if importlib.util.find_spec("libtpu") is not None:
    return "tpu"
  return None


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> bool:
  """Joins this process to a multi-process run; call before any JAX computation.

  With the three arguments (the launchers' flags), or none of them on a cluster JAX
  detects (``detected_cluster``), this calls ``jax.distributed.initialize``; with none
  elsewhere, or ``num_processes=1``, the run stays a single process. Processes other than
  0 then log warnings only.

  Returns:
    whether ``jax.distributed`` was initialised.

  Raises:
    ConfigError: some of the three given but not all (outside a detected cluster), or
      ``process_id`` outside [0, num_processes).
  """
  given = {
    "coordinator_address": coordinator_address,
    "num_processes": num_processes,
    "process_id": process_id,
  }
  if num_processes is not None and int(num_processes) < 1:
    raise ConfigError(f"--num_processes must be >= 1, got {num_processes}.")
  if num_processes is not None and process_id is not None:
    if not 0 <= int(process_id) < int(num_processes):
      raise ConfigError(
        f"--process_id must be in [0, {num_processes}) for --num_processes={num_processes}, "
        f"got {process_id}."
      )
  if num_processes is not None and int(num_processes) == 1:
    return False  # One process: nothing to join.
  cluster = detected_cluster()
  if all(v is None for v in given.values()) and cluster is None:
    return False
  missing = [f"--{k}" for k, v in given.items() if v is None]
  if missing and cluster is None and len(missing) < len(given):
    raise ConfigError(
      f"A multi-process run needs {FLAGS_HELP} on every process (or a cluster that JAX "
      f"detects: SLURM, Open MPI, Cloud TPU); missing {', '.join(missing)}."
    )
  # CPU collectives across processes (the default of recent JAX, explicit here): the CPU
  # client is created after this, on the first use of a device.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
      coordinator_address=coordinator_address,
      num_processes=None if num_processes is None else int(num_processes),
      process_id=None if process_id is None else int(process_id),
    )
  except ValueError as e:
    if cluster != "tpu" or not all(v is None for v in given.values()):
      raise ConfigError(f"jax.distributed.initialize: {e}") from e
    # libtpu without a multi-host TPU environment (e.g. a single-host notebook VM).
    logging.warning("Not a multi-host TPU slice (%s); running as a single process.", e)
    return False
  if jax.process_index() != 0:
    utils.get_logger().setLevel(std_logging.WARNING)
  logging.info(
    "Process %d of %d (%s); %d of %d devices are local.",
    jax.process_index(),
    jax.process_count(),
    cluster or coordinator_address,
    jax.local_device_count(),
    jax.device_count(),
  )
  return True


def is_main() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


def is_multiprocess() -> bool:
  return jax.process_count() > 1


def sync(name: str):
  """Waits until every process reaches this point (a no-op in one process)."""
  if is_multiprocess():
    multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
  """Whether ``flag`` is true in any process; every process must call it (blocking)."""
  if not is_multiprocess():
    return bool(flag)
  return bool(np.any(multihost_utils.process_allgather(np.asarray(bool(flag)))))


def allgather_object(value) -> list:
  """Every process's ``value`` (any picklable object), in process order; every process
  must call it. One process: ``[value]``."""
  if not is_multiprocess():
    return [value]
  data = np.frombuffer(pickle.dumps(value), np.uint8)
  sizes = multihost_utils.process_allgather(np.asarray(data.size, np.int64))
  padded = 1 << int(np.max(sizes) - 1).bit_length()  # Few distinct shapes to compile.
  rows = multihost_utils.process_allgather(np.pad(data, (0, padded - data.size)))
  return [pickle.loads(row[: int(size)].tobytes()) for row, size in zip(rows, sizes)]


class StopVote:
  """Agrees across processes whether to stop, without stalling the host.

  ``update(local)`` is called after every step with this process's wish (a signal
  received). In one process it returns ``local`` at once. In several, it posts the wish
  as a tiny all-reduce over every device and returns the previous call's result: the
  answer comes one step late, the host never waits for the step it has just queued, and
  every process sees the same answer after the same step, so all stop together.
  """

  def __init__(self):
    self._pending = None
    if is_multiprocess():
      devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
      mesh = Mesh(np.asarray(devices), ("processes",))
      self._votes = NamedSharding(mesh, P("processes"))
      self._reduce = jax.jit(jnp.max, out_shardings=NamedSharding(mesh, P()))

  def update(self, local: bool) -> bool:
    if not is_multiprocess():
      return bool(local)
    local_votes = np.full((jax.local_device_count(),), int(bool(local)), np.int32)
    vote = self._reduce(
      jax.make_array_from_process_local_data(self._votes, local_votes, (jax.device_count(),))
    )
    previous, self._pending = self._pending, vote
    return previous is not None and bool(previous)
