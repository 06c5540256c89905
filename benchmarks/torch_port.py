"""A hand-written PyTorch port of PixelNet's train step, for side-by-side timing.

The same function as ``pixelnet_jax`` (docs/design.md): a VGG trunk with BatchNorm after
every conv (fc6 as a 7x7 conv, fc7 as a 1x1 conv, both with BatchNorm), 2x2 max-pools in
ceil mode, hypercolumn reads at sampled pixels, the MLP head, softmax cross-entropy on the
sampled pixels and SGD with momentum 0.9 and weight decay on the kernels only. No
torchvision. ``step_vs_torch.py`` times it against the framework's step;
``tests/test_torch_port.py`` checks that it computes the same outputs as the JAX model
with the weights copied over (``copy_flax_weights``).

Hypercolumn reads use ``grid_sample(mode='bilinear', padding_mode='border',
align_corners=False)``. With ``align_corners=False`` a normalised coordinate g on a map of
w cells reads cell coordinate ``((g + 1) * w - 1) / 2``; the framework reads input pixel x
of a stride-s map at cell ``(x + 0.5) / s - 0.5``. Equating the two gives
``g = 2 * ((x + 0.5) / s) / w - 1``: the map spans ``w * s`` input pixels, which with
ceil-mode pools can exceed the image width W, so the normalisation uses ``w * s``, never
W. ``padding_mode='border'`` clamps the cell coordinate to ``[0, w - 1]`` as the
framework does.

Nothing in ``pixelnet_jax`` imports this module (torch is only in the ``bench`` extra).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FC_TAPS = ("fc6", "fc7")


@dataclasses.dataclass(frozen=True)
class PortSpec:
  """The architecture, mirroring ``pixelnet_jax.models.VGGSpec`` and the MLP head.

  Attributes:
    stage_widths, convs_per_stage, fc, fc_width: the VGG trunk (as ``VGGSpec``).
    taps: layers read into the hypercolumn, in the head's order.
    head_widths: hidden widths of the MLP head ((4096, 4096) in the paper).
    num_outputs: K.
    dropout: after each hidden ReLU.
    tap_activation: 'post' (after ReLU) or 'pre' (after BatchNorm).
    bn_momentum, bn_epsilon: flax convention (running = m * running + (1 - m) * batch).
    conv_bias: conv bias before each BatchNorm.
  """

  stage_widths: tuple[int, ...]
  convs_per_stage: tuple[int, ...]
  fc: bool
  fc_width: int
  taps: tuple[str, ...]
  head_widths: tuple[int, ...]
  num_outputs: int
  dropout: float = 0.5
  tap_activation: str = "post"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  conv_bias: bool = True

  @property
  def layer_names(self) -> tuple[str, ...]:
    names = [f"conv{s + 1}_{i + 1}" for s, n in enumerate(self.convs_per_stage) for i in range(n)]
    return tuple(names + (list(FC_TAPS) if self.fc else []))

  def tap_channels(self, tap: str) -> int:
    if tap in FC_TAPS:
      return int(self.fc_width)
    return int(self.stage_widths[int(tap[4 : tap.index("_")]) - 1])

  def tap_stride(self, tap: str) -> int:
    if tap in FC_TAPS:
      return 2 ** len(self.stage_widths)
    return 2 ** (int(tap[4 : tap.index("_")]) - 1)


def spec_from_config(config, num_outputs: int) -> PortSpec:
  """The PortSpec of a pixelnet_jax config (trunk, taps, MLP head), via the framework's
  own trunk builder so width multipliers and defaults resolve the same way."""
  from pixelnet_jax import models  # the framework is only needed to read a config

  trunk = models.build_trunk(config.model.trunk, config.model.trunks)
  spec = trunk.spec
  taps = config.model.get("taps")
  taps = tuple(taps) if taps is not None else tuple(spec.default_taps())
  if config.model.head != "mlp":
    raise ValueError(f"The torch port has the MLP head only, got model.head={config.model.head!r}.")
  head = config.model.heads.mlp
  if float(head.hypercolumn_dropout) > 0:
    raise ValueError("The torch port has no hypercolumn dropout; set it to 0.")
  tcfg = config.model.trunks[config.model.trunk]
  return PortSpec(
    stage_widths=tuple(int(w) for w in spec.stage_widths),
    convs_per_stage=tuple(int(n) for n in spec.convs_per_stage),
    fc=bool(spec.fc),
    fc_width=int(spec.fc_width),
    taps=taps,
    head_widths=tuple(int(w) for w in head.widths),
    num_outputs=int(num_outputs),
    dropout=float(head.dropout),
    tap_activation=str(config.model.tap_activation),
    bn_momentum=float(tcfg.bn_momentum),
    bn_epsilon=float(tcfg.bn_epsilon),
    conv_bias=bool(tcfg.conv_bias),
  )


class ConvBN(nn.Module):
  """Conv ('SAME': padding k // 2 for odd k) -> BatchNorm; returns the pre-ReLU value."""

  def __init__(self, cin: int, cout: int, kernel: int, spec: PortSpec):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=spec.conv_bias)
    # torch's momentum weighs the new batch: 1 - flax momentum.
    self.bn = nn.BatchNorm2d(cout, eps=spec.bn_epsilon, momentum=1.0 - spec.bn_momentum)
    nn.init.normal_(self.conv.weight, std=0.01)
    if self.conv.bias is not None:
      nn.init.zeros_(self.conv.bias)

  def forward(self, x):
    return self.bn(self.conv(x))


class TorchVGG(nn.Module):
  """The VGG trunk up to the deepest tap; returns {tap: [B, C, h, w]}."""

  def __init__(self, spec: PortSpec):
    super().__init__()
    self.spec = spec
    order = spec.layer_names
    unknown = [t for t in spec.taps if t not in order]
    if unknown:
      raise ValueError(f"Unknown taps {unknown}; this trunk has {order}.")
    self.last = max(order.index(t) for t in spec.taps)
    self.layers = nn.ModuleDict()
    self.pool_before = set()  # layers that follow a 2x2 pool
    cin = 3
    for s, (width, n) in enumerate(zip(spec.stage_widths, spec.convs_per_stage)):
      for i in range(n):
        name = f"conv{s + 1}_{i + 1}"
        if len(self.layers) > self.last:
          return
        if s > 0 and i == 0:
          self.pool_before.add(name)
        self.layers[name] = ConvBN(cin, int(width), 3, spec)
        cin = int(width)
    if spec.fc:
      for name, kernel in zip(FC_TAPS, (7, 1)):
        if len(self.layers) > self.last:
          return
        if name == "fc6":
          self.pool_before.add(name)
        self.layers[name] = ConvBN(cin, int(spec.fc_width), kernel, spec)
        cin = int(spec.fc_width)

  def forward(self, images):
    out = {}
    x = images
    wanted = set(self.spec.taps)
    for name, layer in self.layers.items():
      if name in self.pool_before:
        # 'SAME' 2x2/2 pooling from pixel 0 = ceil mode: a last partial window is kept.
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
      pre = layer(x)
      x = F.relu(pre)
      if name in wanted:
        out[name] = pre if self.spec.tap_activation == "pre" else x
    return out


def read_taps(maps: dict, taps: Sequence[str], strides: Sequence[int], points):
  """Bilinear reads of every tap at the points: [B, N, sum C], taps concatenated.

  Args:
    maps: {tap: [B, C, h, w]}.
    taps: in the head's order.
    strides: each tap's stride in input pixels.
    points: [B, N, 2] float (row, col) in input pixels.
  """
  cols = []
  for tap, s in zip(taps, strides):
    fmap = maps[tap]
    h, w = fmap.shape[-2:]
    # g = 2 * ((x + 0.5) / s) / size - 1: the map covers size * s input pixels.
    gy = (points[..., 0] + 0.5) * (2.0 / (s * h)) - 1.0
    gx = (points[..., 1] + 0.5) * (2.0 / (s * w)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)[:, None]  # [B, 1, N, 2] as (x=col, y=row)
    read = F.grid_sample(
      fmap, grid, mode="bilinear", padding_mode="border", align_corners=False
    )  # [B, C, 1, N]
    cols.append(read[:, :, 0])
  return torch.cat(cols, dim=1).transpose(1, 2)  # [B, N, sum C]


class TorchPixelNet(nn.Module):
  """Trunk -> hypercolumn reads at the points -> MLP head (first layer on the concatenation,
  equivalent to the framework's per-tap split first layer)."""

  def __init__(self, spec: PortSpec):
    super().__init__()
    self.spec = spec
    self.trunk = TorchVGG(spec)
    self.strides = tuple(spec.tap_stride(t) for t in spec.taps)
    widths = tuple(spec.head_widths) + (int(spec.num_outputs),)
    cin = sum(spec.tap_channels(t) for t in spec.taps)
    self.head = nn.ModuleList()
    for width in widths:
      layer = nn.Linear(cin, int(width))
      nn.init.normal_(layer.weight, std=0.001)
      nn.init.zeros_(layer.bias)
      self.head.append(layer)
      cin = int(width)
    self.dropout = nn.Dropout(spec.dropout)

  def forward(self, images, points):
    """images [B, 3, H, W] float32, points [B, N, 2] float (row, col) -> [B, N, K]."""
    maps = self.trunk(images)
    x = read_taps(maps, self.spec.taps, self.strides, points)
    for i, layer in enumerate(self.head):
      if i > 0:
        x = F.relu(x)
        if self.spec.dropout > 0:
          x = self.dropout(x)
      x = layer(x)
    return x


def make_optimizer(model: TorchPixelNet, lr: float = 1e-3, momentum: float = 0.9, wd: float = 5e-4):
  """SGD with momentum; weight decay on conv and linear kernels only (as the framework's
  ``decayed`` kernels): biases and BatchNorm scale/offset get none. torch's coupled
  decay (g + wd * p, then momentum) equals optax ``add_decayed_weights`` then ``sgd``."""
  kernels, others = [], []
  for module in model.modules():
    if isinstance(module, nn.Conv2d | nn.Linear):
      kernels.append(module.weight)
      if module.bias is not None:
        others.append(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
      others += [module.weight, module.bias]
  assert len(kernels) + len(others) == len(list(model.parameters()))
  return torch.optim.SGD(
    [{"params": kernels, "weight_decay": wd}, {"params": others, "weight_decay": 0.0}],
    lr=lr,
    momentum=momentum,
  )


def train_step(model, optimizer, images, points, targets, ignore_index: int = 255):
  """One SGD step: softmax CE averaged over the sampled pixels (ignore_index excluded)."""
  optimizer.zero_grad(set_to_none=True)
  out = model(images, points)
  loss = F.cross_entropy(
    out.reshape(-1, out.shape[-1]), targets.reshape(-1), ignore_index=ignore_index
  )
  loss.backward()
  optimizer.step()
  return loss.detach()


# ----------------------------------------------------------------------------
# Weights from a flax PixelNet.


def _t(x) -> torch.Tensor:
  return torch.from_numpy(np.array(x, dtype=np.float32))


@torch.no_grad()
def copy_flax_weights(model: TorchPixelNet, params, batch_stats) -> None:
  """Copies a flax PixelNet's variables into ``model``.

  Conv kernels HWIO -> OIHW; BatchNorm scale/bias/mean/var -> weight/bias/running_*;
  dense kernels [in, out] -> weight [out, in]; the head's per-tap first kernels
  ``first_<tap>`` are concatenated along the input axis in tap order.
  """
  trunk_p, trunk_s = params["trunk"], batch_stats["trunk"]
  for name, layer in model.trunk.layers.items():
    layer.conv.weight.copy_(_t(trunk_p[name]["kernel"]).permute(3, 2, 0, 1))
    if layer.conv.bias is not None:
      layer.conv.bias.copy_(_t(trunk_p[name]["bias"]))
    bn_p, bn_s = trunk_p[f"{name}_bn"], trunk_s[f"{name}_bn"]
    layer.bn.weight.copy_(_t(bn_p["scale"]))
    layer.bn.bias.copy_(_t(bn_p["bias"]))
    layer.bn.running_mean.copy_(_t(bn_s["mean"]))
    layer.bn.running_var.copy_(_t(bn_s["var"]))
  head = params["head"]
  first = np.concatenate([np.asarray(head["first"][f"first_{t}"]) for t in model.spec.taps], 0)
  model.head[0].weight.copy_(_t(first).T)
  model.head[0].bias.copy_(_t(head["first"]["first_bias"]))
  names = [f"hidden_{i}" for i in range(1, len(model.head) - 1)] + ["output"]
  for layer, name in zip(list(model.head)[1:], names):
    layer.weight.copy_(_t(head[name]["kernel"]).T)
    layer.bias.copy_(_t(head[name]["bias"]))
