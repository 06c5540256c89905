"""Models: registered trunks and per-pixel heads, and PixelNet built from a config.

``create_model(config.model, num_outputs)`` is the one entry point. ``config.model``
names a trunk and a head; each registered one keeps its own fields in
``config.model.trunks.<name>`` / ``config.model.heads.<name>`` (defaults: its
registry entry). The other fields are the model's own (``default_model_config``).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from pixelnet_jax.models.base import (
  HEADS,
  TRUNKS,
  Head,
  Trunk,
  WeightDecay,
  decay_mask,
  decayed,
  unbox,
)
from pixelnet_jax.models.heads import LinearHead, MLPHead, SplitDense
from pixelnet_jax.models.pixelnet import PixelNet
from pixelnet_jax.models.vgg import TAP_ACTIVATIONS, VGG, VGG16, VGG_SMALL, VGGSpec

__all__ = [
  "HEADS",
  "TRUNKS",
  "Head",
  "LinearHead",
  "MLPHead",
  "PixelNet",
  "SplitDense",
  "Trunk",
  "VGG",
  "VGG16",
  "VGG_SMALL",
  "VGGSpec",
  "WeightDecay",
  "build_trunk",
  "create_model",
  "decay_mask",
  "decayed",
  "default_model_config",
  "unbox",
]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def default_model_config() -> ml_collections.ConfigDict:
  """PixelNet as in the paper: VGG-16 with BN, taps conv{1..5}_last + fc7, MLP 4096^2.

  ``trunks`` and ``heads`` hold one sub-dict per registered trunk and head.
  """
  c = ml_collections.ConfigDict()
  c.trunk = "vgg16"  # a name in TRUNKS (models.TRUNKS.names())
  c.trunks = TRUNKS.all_defaults()
  # None: the trunk's default taps; for vgg16 conv1_2, conv2_2, conv3_3, conv4_3,
  # conv5_3, fc7 (5568 channels).
  c.taps = config_dict.placeholder(tuple)
  c.tap_activation = "post"  # 'post' (after ReLU) | 'pre' (after BN, before ReLU)
  c.head = "mlp"  # a name in HEADS (models.HEADS.names())
  c.heads = HEADS.all_defaults()
  c.dense_chunk_size = 8192  # pixels per image per head call at dense inference
  # Compute dtype: 'float32' | 'bfloat16' | 'float16'. Parameters, optimizer state,
  # BatchNorm statistics (flax computes and keeps them in float32) and the loss stay
  # float32; heads return float32 outputs.
  c.dtype = "float32"
  # Linear-first head: the first layer's per-tap projection of taps of stride >=
  # linear_first_min_stride runs on the map before the bilinear read (exact: the read is
  # linear; same parameters). Heads that cannot (linear: BN + ReLU first) ignore it.
  c.linear_first = True
  c.linear_first_min_stride = 8
  return c


def _entry_config(registry, name: str, configs) -> ml_collections.ConfigDict:
  """Registry entry ``name``'s defaults updated by ``configs[name]`` where present."""
  overrides = configs.get(name) if configs is not None else None
  return registry.config(
    name, overrides, where=f"{registry.config_key.rsplit('.', 1)[0]}.{registry.kind}s.{name}"
  )


def build_trunk(name: str, trunk_configs=None) -> Trunk:
  """Trunk ``name`` built from its entry's defaults updated by ``trunk_configs[name]``
  (``config.model.trunks``)."""
  return TRUNKS.get(name)(_entry_config(TRUNKS, name, trunk_configs))


def _taps(model_config, spec) -> tuple[str, ...]:
  taps = model_config.get("taps")
  if taps is None:
    return tuple(spec.default_taps())
  taps = tuple(taps)
  if not taps:
    raise ValueError("model.taps is empty: name at least one layer, or None for the default.")
  if len(set(taps)) != len(taps):
    raise ValueError(f"model.taps {taps} names a layer twice.")
  spec.check_taps(taps)
  return taps


def create_model(
  model_config: ml_collections.ConfigDict, num_outputs: int, bn_axis_name: str | None = None
) -> PixelNet:
  """Builds PixelNet from ``config.model`` (fields: see ``default_model_config``).

  Args:
    model_config: the model ConfigDict; missing fields take their defaults.
    num_outputs: K, outputs per pixel (from the task).
    bn_axis_name: 'batch' when the step runs per shard (pmap, shard_map) so that
      BatchNorm averages statistics over devices; None on one device.

  Returns:
    an unbound PixelNet; ``model.init(key, images, points)`` makes its variables, with
    the parameters that get weight decay boxed (``decay_mask``, ``unbox``).
  """
  cfg = default_model_config()
  unknown = sorted(set(model_config.keys()) - set(cfg.keys()))
  if unknown:
    raise ValueError(f"Unknown model config fields {unknown}; known: {sorted(cfg.keys())}.")
  for key, value in model_config.items():
    if key not in ("trunks", "heads"):
      cfg[key] = value
  if int(num_outputs) < 1:
    raise ValueError(f"num_outputs must be >= 1, got {num_outputs}.")
  if cfg.tap_activation not in TAP_ACTIVATIONS:
    raise ValueError(
      f"Unknown model.tap_activation {cfg.tap_activation!r}; choose one of {TAP_ACTIVATIONS}."
    )
  if cfg.dtype not in DTYPES:
    raise ValueError(f"Unknown model.dtype {cfg.dtype!r}; choose one of {tuple(DTYPES)}.")
  if int(cfg.linear_first_min_stride) < 1:
    raise ValueError(
      f"model.linear_first_min_stride must be >= 1, got {cfg.linear_first_min_stride}."
    )
  if int(cfg.dense_chunk_size) < 1:
    raise ValueError(f"model.dense_chunk_size must be >= 1, got {cfg.dense_chunk_size}.")
  dtype = DTYPES[cfg.dtype]
  trunk = build_trunk(cfg.trunk, model_config.get("trunks"))
  taps = _taps(cfg, trunk.spec)
  head_config = _entry_config(HEADS, cfg.head, model_config.get("heads"))
  head = HEADS.get(cfg.head)(
    tap_names=taps,
    num_outputs=int(num_outputs),
    bn_axis_name=bn_axis_name,
    dtype=dtype,
    **head_config,
  )
  return PixelNet(
    trunk=trunk.make(
      taps=taps, tap_activation=cfg.tap_activation, bn_axis_name=bn_axis_name, dtype=dtype
    ),
    head=head,
    taps=taps,
    tap_strides=tuple(float(trunk.spec.tap_stride(t)) for t in taps),
    num_outputs=int(num_outputs),
    dense_chunk_size=int(cfg.dense_chunk_size),
    spec=trunk.spec,
    linear_first=bool(cfg.linear_first),
    linear_first_min_stride=float(cfg.linear_first_min_stride),
  )
