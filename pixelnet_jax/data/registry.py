"""Dataset registry: a dataset name and split -> a random-access source of example dicts.

A dataset module of this package registers a factory ``(split, config) -> source``
with the config fields it reads and their defaults::

    @DATASETS.register("camvid", defaults=dict(manual_dir=None, backend="folder"))
    def camvid_source(split, config): ...

Adding a dataset is adding that one module (and its test); it is found by name.
A source is random access: ``len(source)`` and ``source[i]`` -> an example dict with
``image [H, W, 3] uint8`` and the label keys of its task (see ``data.pipeline``).

``config.dataset`` (composed by ``config_base.dataset_config``) holds the fields
every dataset shares (``COMMON_DEFAULTS``) plus the registered entry's defaults.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict

from pixelnet_jax.registry import Registry

DATASETS = Registry("dataset", "config.dataset.name", package="pixelnet_jax.data")

# Fields of config.dataset that every dataset has; the loops read them, sources do not.
COMMON_DEFAULTS = dict(
  train_split="train",
  eval_split="val",
  num_eval_examples=config_dict.placeholder(int),  # None: the whole eval split
)


def known_sources() -> list[str]:
  """Names of the registered datasets."""
  return DATASETS.names()


def source_config(name: str, config: Any = None) -> ml_collections.ConfigDict:
  """Entry ``name``'s defaults updated by the fields of ``config`` it knows.

  ``config`` is ``config.dataset`` or any mapping; fields of other datasets and
  the common fields are not the source's business and are left out.
  """
  merged = DATASETS.defaults(name).to_dict()
  if config is not None:
    items = config.items() if hasattr(config, "items") else dict(config).items()
    for key, value in items:
      if key in merged and value is not None:
        merged[key] = value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value
  return ml_collections.ConfigDict(merged)


def get_source(name: str, split: str, config: Any = None) -> Any:
  """The random-access source (``len``, ``[i]`` -> example dict) of dataset ``name``, ``split``.

  Args:
    name: a registered dataset (``known_sources()``).
    split: one of the dataset's splits.
    config: ``config.dataset`` or a plain mapping (e.g. ``{"manual_dir": ..., "backend":
      "folder"}``); missing fields take the dataset's defaults.
  """
  return DATASETS.get(name)(split, source_config(name, config))
