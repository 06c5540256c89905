"""One registry mechanism for every pluggable component.

Datasets, tasks, trunks, heads, optimizers and learning-rate schedules are each
a ``Registry``. A component registers itself where it is defined::

    @HEADS.register("mlp", defaults=dict(widths=(4096, 4096), dropout=0.5))
    class MLPHead(nn.Module): ...

and a config names it (``config.model.head = "mlp"``). A registry built with
``package=`` imports every public module of that package the first time it is
asked for a name, so adding a component is adding one file: nothing else lists it.

Each entry owns its config defaults (``defaults(name)``); config files compose
them, and validation reads the registry, never a second list of names.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections


@dataclasses.dataclass(frozen=True)
class Entry:
  """A registered component: its name, the object itself and its config defaults."""

  name: str
  obj: Any
  defaults: Mapping[str, Any]


class Registry:
  """Name -> component, with per-entry config defaults.

  Attributes:
    kind: what the entries are ('dataset', 'head', ...), used in messages.
    config_key: the config field that names an entry (e.g. 'config.model.head').
    package: dotted package whose modules are imported to discover entries.
  """

  def __init__(self, kind: str, config_key: str, package: str | None = None):
    self.kind = kind
    self.config_key = config_key
    self.package = package
    self._entries: dict[str, Entry] = {}
    self._discovered = package is None

  def register(self, name: str, *, defaults: Mapping[str, Any] | None = None) -> Callable:
    """Decorator: registers ``obj`` under ``name`` with its config ``defaults``.

    Registering a name again replaces the entry only when it comes from the same module
    (a module re-imported); a name taken by another module is an error.
    """

    def decorator(obj):
      old = self._entries.get(name)
      if old is not None and _origin(old.obj) != _origin(obj):
        raise ValueError(
          f"A {self.kind} named {name!r} is already registered by {_origin(old.obj)}."
        )
      self._entries[name] = Entry(name, obj, dict(defaults or {}))
      return obj

    return decorator

  def _discover(self):
    if self._discovered:
      return
    self._discovered = True
    package = importlib.import_module(self.package)
    for module in pkgutil.iter_modules(package.__path__):
      if not module.name.startswith("_"):
        importlib.import_module(f"{self.package}.{module.name}")

  def names(self) -> list[str]:
    """Every registered name, sorted."""
    self._discover()
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self.names()

  def entry(self, name: str) -> Entry:
    """The entry ``name``; a ValueError lists the registered names otherwise."""
    self._discover()
    if name not in self._entries:
      raise ValueError(
        f"Unknown {self.kind} {name!r} ({self.config_key}); registered: {self.names()}."
      )
    return self._entries[name]

  def get(self, name: str) -> Any:
    """The registered object (class or factory) ``name``."""
    return self.entry(name).obj

  def defaults(self, name: str) -> ml_collections.ConfigDict:
    """A fresh ConfigDict of entry ``name``'s config defaults (never shared references)."""
    return ml_collections.ConfigDict(copy.deepcopy(dict(self.entry(name).defaults)))

  def all_defaults(self) -> ml_collections.ConfigDict:
    """{name: defaults} of every entry: a config sub-dict per registered component."""
    return ml_collections.ConfigDict({n: self.defaults(n) for n in self.names()})

  def config(self, name: str, overrides: Any = None, *, where: str | None = None):
    """Entry ``name``'s defaults updated by ``overrides`` (a mapping or ConfigDict).

    Unknown fields are an error naming them and the known ones: a misspelt key
    would otherwise be silently ignored.
    """
    merged = self.defaults(name)
    if overrides is None:
      return merged
    items = overrides.items() if hasattr(overrides, "items") else dict(overrides).items()
    where = where or f"{self.kind} {name!r}"
    for key, value in items:
      if key not in merged:
        raise ValueError(f"Unknown field {key!r} for {where}; known fields: {sorted(merged)}.")
      if isinstance(value, ml_collections.ConfigDict):
        value = value.to_dict()
      merged[key] = value
    return merged


def _origin(obj: Any) -> str | None:
  """The module that defined ``obj`` (or the function a ``functools.partial`` wraps)."""
  return getattr(obj, "__module__", None) or getattr(getattr(obj, "func", None), "__module__", None)
