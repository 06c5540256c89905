"""Per-pixel heads on hypercolumn features.

Both heads take the hypercolumn as its per-tap parts, a list of ``[..., C_i]``,
and keep their first layer split per tap: one kernel ``first_<tap>`` of shape
``[C_tap, width]`` per tap and one bias ``first_bias``, so that
``W1 . h_p = sum_tap W1_tap . c_tap(p)``. Since a bilinear read is linear too,
the projection of a coarse tap can be moved before the read (the "linear-first"
path, ``config.model.linear_first``: ``Head.can_project`` / ``project_map`` and
``projected=``) without changing the parameters.

Each head registers in ``base.HEADS`` with its config defaults, which are its own
dataclass fields (``config.model.heads.<name>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pixelnet_jax.models.base import HEADS, Head, check_rate, decayed
from pixelnet_jax.models.vgg import normal_init


def _check_features(features, tap_names):
  if len(features) != len(tap_names):
    raise ValueError(
      f"The head was built for taps {tuple(tap_names)} but got {len(features)} feature arrays."
    )


class Dropout(nn.Module):
  """Inverted dropout whose mask is drawn flat and reshaped.

  Same semantics as ``nn.Dropout``; the flat draw avoids the slow CPU compiles
  of multi-dimensional Threefry draws (see ``vgg.normal_init``). Needs the
  'dropout' rng when ``train`` and ``rate > 0``.
  """

  rate: float

  @nn.compact
  def __call__(self, x, train: bool):
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (int(np.prod(x.shape)),))
    return jnp.where(mask.reshape(x.shape), x / keep, jnp.zeros_like(x))


def _check_projected(projected, tap_names) -> tuple[bool, ...]:
  if projected is None:
    return (False,) * len(tap_names)
  projected = tuple(bool(p) for p in projected)
  if len(projected) != len(tap_names):
    raise ValueError(f"projected has {len(projected)} flags for taps {tuple(tap_names)}.")
  return projected


def project_with_first_layer(head: nn.Module, tap: str, x, dtype):
  """``x [..., C] @ first_<tap>`` with the kernel of ``head``'s ``first`` SplitDense, read
  from the head's (bound, initialised) variables; boxes are stripped."""
  first = head.get_variable("params", "first")
  if first is None or f"first_{tap}" not in first:
    raise ValueError(
      f"{type(head).__name__}.project_map({tap!r}) needs initialised variables with "
      f"params/first/first_{tap}."
    )
  kernel = nn.meta.unbox(first[f"first_{tap}"])
  return jnp.dot(x.astype(dtype), kernel.astype(dtype))


class SplitDense(nn.Module):
  """A Dense layer on the concatenation of per-tap features, kept split per tap.

  Attributes:
    tap_names: one name per feature array; the kernels are ``first_<tap>``.
    features: output width.
    init_std: std of the normal kernel init (bias starts at zero).
    dtype: compute dtype.
  """

  tap_names: tuple[str, ...]
  features: int
  init_std: float = 0.001
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: Sequence[Any], projected: Sequence[bool] | None = None):
    """features: list of [..., C_i] -> [..., width] = sum_i f_i @ W_i + b.

    ``projected[i]`` True: ``features[i]`` is already ``f_i @ W_i`` ([..., width], e.g. read
    from ``project(tap, map)``), added as is; its kernel is then not looked up (it must
    exist: never pass projected features to ``init``).
    """
    _check_features(features, self.tap_names)
    projected = _check_projected(projected, self.tap_names)
    init = decayed(normal_init(self.init_std))
    y = None
    for tap, f, done in zip(self.tap_names, features, projected):
      if done:
        term = f.astype(self.dtype)
      else:
        kernel = self.param(f"first_{tap}", init, (f.shape[-1], self.features), jnp.float32)
        term = jnp.dot(f.astype(self.dtype), kernel.astype(self.dtype))
      y = term if y is None else y + term
    bias = self.param("first_bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y + bias.astype(self.dtype)


@HEADS.register(
  "mlp", defaults=dict(widths=(4096, 4096), dropout=0.5, hypercolumn_dropout=0.0, init_std=0.001)
)
class MLPHead(Head):
  """FC -> ReLU -> dropout, repeated, then FC K; the first FC split per tap.

  Attributes (besides ``Head``'s):
    widths: hidden widths, (4096, 4096) in the paper; () makes the head one
      (split) linear layer.
    dropout: dropout rate after each hidden ReLU.
    hypercolumn_dropout: dropout rate on the hypercolumn itself (0 disables).
    init_std: std of the normal init of every kernel.
  """

  widths: tuple[int, ...] = (4096, 4096)
  dropout: float = 0.5
  hypercolumn_dropout: float = 0.0
  init_std: float = 0.001

  def __post_init__(self):
    check_rate(self.dropout, "config.model.heads.mlp.dropout")
    check_rate(self.hypercolumn_dropout, "config.model.heads.mlp.hypercolumn_dropout")
    if any(int(w) < 1 for w in self.widths):
      raise ValueError(f"config.model.heads.mlp.widths must be positive, got {self.widths}.")
    super().__post_init__()

  def can_project(self, train: bool) -> bool:
    """Linear-first is exact unless hypercolumn dropout is on (a per-channel mask does not
    commute with the projection)."""
    return not (train and self.hypercolumn_dropout > 0)

  def project_map(self, tap: str, x):
    """``x [..., C_tap] @ first_<tap>`` -> ``[..., widths[0] or K]`` (no bias)."""
    return project_with_first_layer(self, tap, x, self.dtype)

  @nn.compact
  def __call__(
    self, features: Sequence[Any], train: bool = False, projected: Sequence[bool] | None = None
  ):
    """features: list of [..., C_i] -> [..., K] float32.

    ``projected[i]`` True: ``features[i]`` is already ``project_map(tap_i, .)`` of the
    tap's features (the linear-first path; only where ``can_project(train)``).
    Training with a non-zero dropout rate needs ``rngs={'dropout': key}``.
    """
    _check_features(features, self.tap_names)
    projected = _check_projected(projected, self.tap_names)
    if self.hypercolumn_dropout > 0:
      if any(projected) and not self.can_project(train):
        raise ValueError("Projected features cannot take hypercolumn dropout in training.")
      drop = Dropout(self.hypercolumn_dropout, name="hypercolumn_dropout")
      features = [f if p else drop(f, train) for f, p in zip(features, projected)]
    widths = tuple(int(w) for w in self.widths) + (int(self.num_outputs),)
    x = SplitDense(self.tap_names, widths[0], self.init_std, self.dtype, name="first")(
      features, projected
    )
    for i, width in enumerate(widths[1:]):
      x = nn.relu(x)
      if self.dropout > 0:
        x = Dropout(self.dropout, name=f"dropout_{i + 1}")(x, train)
      last = i == len(widths) - 2
      x = nn.Dense(
        width,
        kernel_init=decayed(normal_init(self.init_std)),
        bias_init=nn.initializers.zeros,
        dtype=self.dtype,
        name="output" if last else f"hidden_{i + 1}",
      )(x)
    return x.astype(jnp.float32)


@HEADS.register(
  "linear",
  defaults=dict(
    normalize=True, hypercolumn_dropout=0.0, init_std=0.001, bn_momentum=0.9, bn_epsilon=1e-5
  ),
)
class LinearHead(Head):
  """Per-tap BatchNorm (no scale/offset), ReLU, one FC to K: the hypercolumn baseline.

  The per-tap normalisation puts taps of very different scales on an equal
  footing before the single linear layer. The ReLU after it does not commute with
  the bilinear read, so this head has no linear-first path (``can_project`` is
  False): ``config.model.linear_first`` leaves it on the plain path.

  Attributes (besides ``Head``'s):
    normalize: the per-tap BatchNorm; False feeds the raw taps (through the ReLU) to
      the linear layer, the unnormalised baseline the paper reports as degenerate.
    hypercolumn_dropout: dropout rate on the normalised hypercolumn (0 disables).
    init_std: std of the normal kernel init.
    bn_momentum, bn_epsilon: of the per-tap BatchNorm.
  """

  normalize: bool = True
  hypercolumn_dropout: float = 0.0
  init_std: float = 0.001
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5

  def __post_init__(self):
    check_rate(self.hypercolumn_dropout, "config.model.heads.linear.hypercolumn_dropout")
    super().__post_init__()

  @nn.compact
  def __call__(self, features: Sequence[Any], train: bool = False):
    """features: list of [..., C_i] -> [..., K] float32."""
    _check_features(features, self.tap_names)
    normed = []
    for tap, f in zip(self.tap_names, features):
      if not self.normalize:
        normed.append(nn.relu(f))
        continue
      f = nn.BatchNorm(
        use_running_average=not train,
        use_scale=False,
        use_bias=False,
        momentum=self.bn_momentum,
        epsilon=self.bn_epsilon,
        axis_name=self.bn_axis_name,
        dtype=self.dtype,
        name=f"bn_{tap}",
      )(f)
      normed.append(nn.relu(f))
    if self.hypercolumn_dropout > 0:
      drop = Dropout(self.hypercolumn_dropout, name="hypercolumn_dropout")
      normed = [drop(f, train) for f in normed]
    x = SplitDense(self.tap_names, int(self.num_outputs), self.init_std, self.dtype, name="first")(
      normed
    )
    return x.astype(jnp.float32)
