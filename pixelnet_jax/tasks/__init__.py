"""Task registry: a task is a module ``pixelnet_jax.tasks.<name>`` that defines
``default_config() -> dict`` and ``create(config) -> base.Task``; adding a task is
adding a file.

    task = get_task("segmentation", config.task)   # config.task: overrides of the defaults
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import List

import ml_collections

from pixelnet_jax.tasks import base
from pixelnet_jax.tasks.base import Task

_NOT_TASKS = frozenset({"base"})


def available_tasks() -> List[str]:
  """Names of the task modules in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_") and m.name not in _NOT_TASKS)


def _module(name: str):
  known = available_tasks()
  if name not in known:
    raise ValueError(f"Unknown task {name!r}; known tasks: {known} (set config.task.name).")
  return importlib.import_module(f"{__name__}.{name}")


def default_task_config(name: str) -> ml_collections.ConfigDict:
  """The task's config fields with their defaults (for ``config.task``)."""
  return base.config_from(_module(name).default_config(), None, name)


def get_task(name: str, config=None) -> Task:
  """Builds task ``name`` from its defaults overridden by ``config`` (dict/ConfigDict).

  Raises:
    ValueError: unknown task (the known ones are listed), unknown config field,
      or an invalid value.
  """
  module = _module(name)
  return module.create(base.config_from(module.default_config(), config, name))


__all__ = ["Task", "available_tasks", "default_task_config", "get_task"]
