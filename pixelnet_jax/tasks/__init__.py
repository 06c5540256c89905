"""Tasks: a task is a ``base.Task`` subclass registered in ``base.TASKS`` with its
config defaults; adding a task is adding one module to this package.

    task = get_task("segmentation", config.task)   # config.task: overrides of the defaults
"""

from __future__ import annotations

import ml_collections

from pixelnet_jax.tasks import base
from pixelnet_jax.tasks.base import TASKS, Task


def available_tasks() -> list[str]:
  """Names of the registered tasks."""
  return TASKS.names()


def default_task_config(name: str) -> ml_collections.ConfigDict:
  """The task's config fields with their defaults (for ``config.task``)."""
  return base.config_from(TASKS.entry(name).defaults, None, name)


def get_task(name: str, config=None) -> Task:
  """Builds task ``name`` from its defaults overridden by ``config`` (dict/ConfigDict).

  Raises:
    ValueError: unknown task (the registered ones are listed), unknown config field,
      or an invalid value.
  """
  entry = TASKS.entry(name)
  return entry.obj(base.config_from(entry.defaults, config, name))


__all__ = ["TASKS", "Task", "available_tasks", "default_task_config", "get_task"]
