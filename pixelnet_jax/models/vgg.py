"""The VGG trunk with BatchNorm, and the smaller members of its family.

VGG-16 (Simonyan & Zisserman) as PixelNet trains it from scratch: 3x3 convs
(padding 1), BatchNorm and ReLU after every conv, 2x2 max-pool stride 2 after
each stage; then fc6 as a 7x7 conv (padding 3) on the stride-32 map and fc7 as a
1x1 conv. Smaller members change the stage widths, convs per stage, number of
stages and whether fc6/fc7 exist, so CPU runs stay practical.

Map sizes: every pool uses 'SAME' padding, i.e. ceil mode (Caffe's rounding): a
map after ``k`` pools of an ``H x W`` image is ``ceil(H / 2**k) x ceil(W / 2**k)``
(225x300 gives 225x300, 113x150, 57x75, 29x38, 15x19 and fc6/fc7 at 8x10). Pools
start at pixel 0, so a map after ``k`` pools has stride exactly ``2**k`` with cell
``i`` centred on input pixel ``(i + 0.5) * 2**k - 0.5`` for every image size (a
padded last cell may lie past the border; reads clamp to it). PixelNet reads taps
with that stride, not ``image size / map size``, which differs when ``2**k`` does
not divide the image size.

The trunk is built only up to its deepest requested tap: layers after it would
get no gradient, so they are neither computed nor given parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_dict

from pixelnet_jax.models.base import TRUNKS, Trunk, decayed

TAP_ACTIVATIONS = ("post", "pre")
FC_TAPS = ("fc6", "fc7")
_CONV_TAP = re.compile(r"^conv(\d+)_(\d+)$")


@dataclasses.dataclass(frozen=True)
class VGGSpec:
  """Architecture of one member of the VGG family.

  Attributes:
    stage_widths: output channels of each stage's convs, e.g. (64, ..., 512).
    convs_per_stage: number of 3x3 convs in each stage, e.g. (2, 2, 3, 3, 3).
    fc: whether fc6 (7x7 conv, padding 3) and fc7 (1x1 conv) follow the last pool.
    fc_width: channels of fc6 and fc7.
  """

  stage_widths: tuple[int, ...]
  convs_per_stage: tuple[int, ...]
  fc: bool = True
  fc_width: int = 4096

  def __post_init__(self):
    if len(self.stage_widths) != len(self.convs_per_stage) or not self.stage_widths:
      raise ValueError(
        f"stage_widths {self.stage_widths} and convs_per_stage {self.convs_per_stage} "
        "must be non-empty and of the same length (one entry per stage)."
      )
    if any(int(w) < 1 for w in self.stage_widths) or any(int(n) < 1 for n in self.convs_per_stage):
      raise ValueError(
        f"stage_widths {self.stage_widths} and convs_per_stage {self.convs_per_stage} "
        "must be positive integers."
      )
    if self.fc and int(self.fc_width) < 1:
      raise ValueError(f"fc_width must be a positive integer, got {self.fc_width}.")

  @property
  def tap_names(self) -> tuple[str, ...]:
    """Every layer of the trunk, in order: conv1_1, ..., fc6, fc7."""
    names = [f"conv{s + 1}_{i + 1}" for s, n in enumerate(self.convs_per_stage) for i in range(n)]
    if self.fc:
      names += list(FC_TAPS)
    return tuple(names)

  def tap_channels(self, tap: str) -> int:
    """Channels of a tap's map."""
    self.check_taps((tap,))
    if tap in FC_TAPS:
      return int(self.fc_width)
    stage = int(_CONV_TAP.match(tap).group(1))
    return int(self.stage_widths[stage - 1])

  def tap_num_pools(self, tap: str) -> int:
    """Pools before a tap's map: conv{s}_* sits after s - 1 pools, fc6/fc7 after all."""
    self.check_taps((tap,))
    if tap in FC_TAPS:
      return len(self.stage_widths)
    return int(_CONV_TAP.match(tap).group(1)) - 1

  def tap_stride(self, tap: str) -> int:
    """A tap's stride in input pixels: 2 ** (pools before it)."""
    return 2 ** self.tap_num_pools(tap)

  def check_taps(self, taps: Sequence[str]) -> None:
    """Raises ValueError naming a tap this trunk does not have, and the ones it has."""
    available = self.tap_names
    for tap in taps:
      if not isinstance(tap, str):
        raise ValueError(f"model.taps entries must be layer names, got {tap!r}.")
      if tap in available:
        continue
      if tap in FC_TAPS:
        why = "this trunk has no fc6/fc7 (set fc=True in its config.model.trunks entry)"
      elif _CONV_TAP.match(tap):
        why = (
          f"this trunk has {len(self.stage_widths)} stages with {tuple(self.convs_per_stage)} convs"
        )
      else:
        why = "names are conv{stage}_{index}, fc6 or fc7"
      raise ValueError(
        f"Unknown tap {tap!r} in model.taps: {why}. Available taps: {', '.join(available)}."
      )

  def default_taps(self) -> tuple[str, ...]:
    """The last conv of every stage, plus fc7 when present (PixelNet's default)."""
    taps = [f"conv{s + 1}_{n}" for s, n in enumerate(self.convs_per_stage)]
    if self.fc:
      taps.append("fc7")
    return tuple(taps)


def normal_init(std: float):
  """Normal(0, std) initializer that draws a flat vector and reshapes it.

  Same distribution as ``nn.initializers.normal``, but with jax 0.10's default
  partitionable Threefry, drawing a multi-dimensional shape directly can compile
  far more slowly on CPU than one flat draw.
  """

  def init(key, shape, dtype=jnp.float32):
    size = int(np.prod(shape))
    return (std * jax.random.normal(key, (size,), dtype)).reshape(shape)

  return init


VGG16 = VGGSpec(
  stage_widths=(64, 128, 256, 512, 512), convs_per_stage=(2, 2, 3, 3, 3), fc=True, fc_width=4096
)
VGG_SMALL = VGGSpec(
  stage_widths=(16, 32, 64, 128), convs_per_stage=(1, 2, 2, 2), fc=False, fc_width=256
)


class VGG(nn.Module):
  """VGG trunk with BatchNorm after every conv; returns the requested taps.

  Attributes:
    spec: the architecture (VGGSpec).
    taps: names of the layers to return (validated against ``spec``).
    tap_activation: 'post' reads a layer after its ReLU, 'pre' after its
      BatchNorm and before its ReLU.
    init_std: std of the normal init of conv kernels (biases start at zero).
    use_bias: conv bias before BatchNorm (VGG+BN keeps it).
    batch_norm: BatchNorm after every conv; False is plain VGG (conv, bias, ReLU), the
      from-scratch baseline without normalisation (the bias is then always on).
    bn_momentum, bn_epsilon: BatchNorm running-average momentum and epsilon.
    bn_axis_name: axis over which batch statistics are averaged (``'batch'`` under
      ``jax.pmap``; None on one device or under a jit mesh).
    dtype: compute dtype (parameters stay float32).
  """

  spec: VGGSpec
  taps: tuple[str, ...]
  tap_activation: str = "post"
  init_std: float = 0.01
  use_bias: bool = True
  batch_norm: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  def _conv_bn(self, x, name: str, features: int, kernel: int, train: bool):
    """Conv -> BatchNorm (when ``batch_norm``); returns the pre-ReLU activation."""
    x = nn.Conv(
      features,
      (kernel, kernel),
      padding="SAME",
      use_bias=self.use_bias or not self.batch_norm,
      kernel_init=decayed(normal_init(self.init_std)),
      bias_init=nn.initializers.zeros,
      dtype=self.dtype,
      name=name,
    )(x)
    if not self.batch_norm:
      return x
    return nn.BatchNorm(
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=self.bn_epsilon,
      axis_name=self.bn_axis_name,
      dtype=self.dtype,
      name=f"{name}_bn",
    )(x)

  @nn.compact
  def __call__(self, images, train: bool = False) -> dict[str, Any]:
    """images [B, H, W, 3] float32 -> {tap: [B, h_tap, w_tap, C_tap]}."""
    if self.tap_activation not in TAP_ACTIVATIONS:
      raise ValueError(
        f"model.tap_activation must be one of {TAP_ACTIVATIONS}, got {self.tap_activation!r}."
      )
    if not self.taps:
      raise ValueError("model.taps is empty: name at least one layer to read.")
    self.spec.check_taps(self.taps)
    order = self.spec.tap_names
    last = max(order.index(t) for t in self.taps)
    wanted = set(self.taps)
    out = {}
    x = images.astype(self.dtype)

    def record(name, pre):
      post = nn.relu(pre)
      if name in wanted:
        out[name] = pre if self.tap_activation == "pre" else post
      return post

    layer = 0
    for s, (width, n) in enumerate(zip(self.spec.stage_widths, self.spec.convs_per_stage)):
      if s > 0:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
      for i in range(n):
        name = f"conv{s + 1}_{i + 1}"
        x = record(name, self._conv_bn(x, name, int(width), 3, train))
        if layer == last:
          return out
        layer += 1
    x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    for name, kernel in zip(FC_TAPS, (7, 1)):
      x = record(name, self._conv_bn(x, name, int(self.spec.fc_width), kernel, train))
      if layer == last:
        return out
      layer += 1
    raise AssertionError("unreachable: the deepest tap was validated above")


# ----------------------------------------------------------------------------
# Registered trunks: the two presets and a custom member of the family. Each
# entry's fields are config.model.trunks.<name>.


def _trunk_defaults(spec: VGGSpec | None) -> dict:
  return dict(
    stage_widths=spec.stage_widths if spec else config_dict.placeholder(tuple),
    convs_per_stage=spec.convs_per_stage if spec else config_dict.placeholder(tuple),
    fc=spec.fc if spec else False,
    fc_width=spec.fc_width if spec else 4096,
    width_multiplier=1.0,  # scales stage widths and fc_width (min 1 channel)
    init_std=0.01,  # Gaussian init of the conv kernels
    conv_bias=True,  # conv bias before each BatchNorm
    batch_norm=True,  # False: no BatchNorm in the trunk (conv, bias, ReLU)
    bn_momentum=0.9,
    bn_epsilon=1e-5,
  )


def vgg_trunk(cfg, name: str = "vgg") -> Trunk:
  """A VGG trunk from its config entry (fields: see ``_trunk_defaults``)."""
  missing = [k for k in ("stage_widths", "convs_per_stage") if cfg.get(k) is None]
  if missing:
    raise ValueError(
      f"model.trunk={name!r} needs "
      + " and ".join(f"config.model.trunks.{name}.{k}" for k in missing)
      + " (or use a preset trunk: 'vgg16', 'vgg_small')."
    )
  multiplier = float(cfg.width_multiplier)
  if multiplier <= 0:
    raise ValueError(f"config.model.trunks.{name}.width_multiplier must be > 0, got {multiplier}.")

  def scale(width):
    return max(1, int(round(int(width) * multiplier)))

  spec = VGGSpec(
    stage_widths=tuple(scale(w) for w in cfg.stage_widths),
    convs_per_stage=tuple(int(n) for n in cfg.convs_per_stage),
    fc=bool(cfg.fc),
    fc_width=scale(cfg.fc_width),
  )
  make = functools.partial(
    VGG,
    spec=spec,
    init_std=float(cfg.init_std),
    use_bias=bool(cfg.conv_bias),
    batch_norm=bool(cfg.batch_norm),
    bn_momentum=float(cfg.bn_momentum),
    bn_epsilon=float(cfg.bn_epsilon),
  )
  return Trunk(spec=spec, make=make)


TRUNKS.register("vgg16", defaults=_trunk_defaults(VGG16))(
  functools.partial(vgg_trunk, name="vgg16")
)
TRUNKS.register("vgg_small", defaults=_trunk_defaults(VGG_SMALL))(
  functools.partial(vgg_trunk, name="vgg_small")
)
TRUNKS.register("vgg", defaults=_trunk_defaults(None))(functools.partial(vgg_trunk, name="vgg"))
