"""What every trunk and head shares: their registries, the Head base class, and the
weight-decay declaration.

Trunks and heads register themselves with their config defaults; ``create_model``
looks them up by ``config.model.trunk`` / ``config.model.head``, and each one's fields
live in ``config.model.trunks.<name>`` / ``config.model.heads.<name>``. A module of this
package may register any number of them; adding a head is adding one file.

Weight decay is declared where a parameter is made: an initializer wrapped in
``decayed`` boxes the value in ``WeightDecay`` (flax's ``AxisMetadata``, the mechanism
of ``nn.with_partitioning``), ``model.init`` returns the boxes, ``decay_mask`` reads
them and ``unbox`` strips them before training. A kernel made without ``decayed`` is
not decayed, whatever it is called.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from pixelnet_jax.registry import Registry

TRUNKS = Registry("trunk", "config.model.trunk", package="pixelnet_jax.models")
HEADS = Registry("head", "config.model.head", package="pixelnet_jax.models")


class WeightDecay(flax.struct.PyTreeNode, nn.meta.AxisMetadata):
  """A parameter value the optimizer's weight decay applies to."""

  value: Any

  def unbox(self):
    return self.value

  def replace_boxed(self, val):
    return self.replace(value=val)

  def add_axis(self, index, params):
    return self

  def remove_axis(self, index, params):
    return self


def decayed(init: Callable) -> Callable:
  """Wraps an initializer so that the parameter it makes gets weight decay."""

  def wrapped(*args, **kwargs):
    return WeightDecay(init(*args, **kwargs))

  return wrapped


def _is_box(x) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


def decay_mask(params: Any) -> Any:
  """Bool tree of ``params`` (as ``model.init`` returns them, boxed): True where declared."""
  return jax.tree.map(lambda x: isinstance(x, WeightDecay), params, is_leaf=_is_box)


def unbox(tree: Any) -> Any:
  """``tree`` with every metadata box replaced by its value."""
  return nn.meta.unbox(tree)


@dataclasses.dataclass(frozen=True)
class Trunk:
  """What a registered trunk gives PixelNet.

  Attributes:
    spec: its layers: ``tap_names``, ``default_taps()``, ``check_taps(taps)`` and
      ``tap_stride(tap)`` (a map's cell i is centred on input pixel (i + 0.5) s - 0.5).
    make: ``make(taps=, tap_activation=, bn_axis_name=, dtype=)`` -> a module mapping
      ``images [B, H, W, 3]`` to ``{tap: [B, h, w, C]}`` (``__call__(images, train)``).
  """

  spec: Any
  make: Callable[..., nn.Module]


class Head(nn.Module):
  """Base of the per-pixel heads: features (one ``[..., C_tap]`` per tap) -> ``[..., K]``.

  A head subclass registers with ``@HEADS.register(name, defaults={...})``; its config
  fields are its own dataclass fields, the ones below come from the model.

  Attributes:
    tap_names: names of the taps, in the order the features come.
    num_outputs: K.
    bn_axis_name: axis BatchNorm averages statistics over (``'batch'`` per shard).
    dtype: compute dtype; the output is float32.
  """

  tap_names: tuple[str, ...]
  num_outputs: int
  bn_axis_name: Any = None
  dtype: Any = jnp.float32

  def __call__(self, features, train: bool = False):
    raise NotImplementedError

  # Optional capability: the "linear-first" path (``config.model.linear_first``). A head
  # whose first layer is linear in each tap's features (``W1 . h = sum_tap W_tap . c_tap``,
  # nothing per-feature before it) can have a tap's projection applied to the whole map
  # before the bilinear read, which is linear too: ``W_tap . read(c)(p) = read(W_tap . c)(p)``.
  # Such a head overrides ``can_project`` and ``project_map`` and accepts
  # ``__call__(features, train, projected=...)``; PixelNet uses the plain path for heads
  # that do not (e.g. ``LinearHead``, whose per-tap BatchNorm + ReLU come first).

  def can_project(self, train: bool) -> bool:
    """Whether ``project_map`` and ``projected=`` may be used in this mode (default: no)."""
    del train
    return False

  def project_map(self, tap: str, x):
    """Tap ``tap``'s first-layer projection of ``x [..., C_tap]`` -> ``[..., width]``
    (no bias), in the compute dtype. Needs initialised variables."""
    raise NotImplementedError(f"{type(self).__name__} has no linear-first path.")


def check_rate(value: float, name: str) -> float:
  """A dropout rate in [0, 1), or a ValueError naming the config field."""
  if not 0.0 <= float(value) < 1.0:
    raise ValueError(f"{name} must be in [0, 1), got {value}.")
  return float(value)
