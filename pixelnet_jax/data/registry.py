"""Dataset registry: a dataset name and split -> a random-access source of example dicts.

Adding a dataset is adding one entry to _FACTORIES. Sources are imported lazily so that
naming one dataset never imports another's dependencies.

Config fields read (an ml_collections.ConfigDict or any mapping; missing fields take the
source's own defaults):
  procedural: image_size, num_examples (an int, or a {split: int} mapping), seed.
  bsds500:    data_dir (TFDS data dir), manual_dir (where BSR_bsds500.tgz or BSR/ is),
              backend ('tfds': build/read the array_record dataset, the default;
              'folder': read the extracted BSR/ folder in manual_dir directly).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping


def _get(config: Any, key: str, default: Any = None) -> Any:
  if config is None:
    return default
  if isinstance(config, Mapping) or hasattr(config, 'get'):
    return config.get(key, default)
  return getattr(config, key, default)


def _procedural(split: str, config: Any) -> Any:
  from pixelnet_jax.data import procedural  # pylint: disable=g-import-not-at-top
  kwargs = {}
  for key in ('image_size', 'num_examples', 'seed'):
    value = _get(config, key)
    if hasattr(value, 'items'):  # a per-split {split: value} mapping or ConfigDict
      if split not in value:
        raise ValueError(f'config.{key} has no entry for split {split!r} '
                         f'(entries: {sorted(value)}).')
      value = value[split]
    if value is not None:
      kwargs[key] = value
  return procedural.ProceduralDataset(split=split, **kwargs)


def _bsds500(split: str, config: Any) -> Any:
  from pixelnet_jax.data import bsds500  # pylint: disable=g-import-not-at-top
  backend = _get(config, 'backend', 'tfds') or 'tfds'
  manual_dir = _get(config, 'manual_dir')
  if backend == 'tfds':
    return bsds500.Bsds500Source(split, data_dir=_get(config, 'data_dir'),
                                 manual_dir=manual_dir)
  if backend == 'folder':
    if not manual_dir:
      raise FileNotFoundError(
          'config.dataset.backend="folder" needs config.dataset.manual_dir (the folder '
          'holding BSR/).\n\n' + bsds500.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return bsds500.Bsds500FolderSource(split, manual_dir)
  raise ValueError(f'config.dataset.backend for bsds500 must be "tfds" or "folder", got '
                   f'{backend!r}.')


_FACTORIES: dict[str, Callable[[str, Any], Any]] = {
    'procedural': _procedural,
    'bsds500': _bsds500,
}


def known_sources() -> list[str]:
  return sorted(_FACTORIES)


def get_source(name: str, split: str, config: Any = None) -> Any:
  """The random-access source (`len`, `[i]` -> example dict) of dataset `name`, `split`."""
  if name not in _FACTORIES:
    raise ValueError(f'Unknown dataset {name!r}; known datasets: {known_sources()}.')
  return _FACTORIES[name](split, config)
