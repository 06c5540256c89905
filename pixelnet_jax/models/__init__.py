"""Models: the VGG trunk family, per-pixel heads, and PixelNet built from a config.

``create_model(config.model, num_outputs)`` is the one entry point; training
configs start from ``default_model_config()`` and override a few fields.
"""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from pixelnet_jax.models.heads import LinearHead, MLPHead, SplitDense
from pixelnet_jax.models.pixelnet import HEADS, PixelNet
from pixelnet_jax.models.vgg import PRESETS, TAP_ACTIVATIONS, VGG, VGG16, VGG_SMALL, VGGSpec

__all__ = [
  "HEADS",
  "LinearHead",
  "MLPHead",
  "PRESETS",
  "PixelNet",
  "SplitDense",
  "VGG",
  "VGG16",
  "VGG_SMALL",
  "VGGSpec",
  "create_model",
  "default_model_config",
  "trunk_spec",
]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def default_model_config() -> ml_collections.ConfigDict:
  """PixelNet as in the paper: VGG-16 with BN, taps conv{1..5}_last + fc7, MLP 4096^2.

  Fields left ``None`` are taken from the ``trunk`` preset ('vgg16', 'vgg_small');
  with ``trunk='vgg'`` stage_widths and convs_per_stage must be given.
  """
  c = ml_collections.ConfigDict()
  c.trunk = "vgg16"  # 'vgg16' | 'vgg_small' | 'vgg' (custom: set the fields below)
  c.width_multiplier = 1.0  # scales stage widths and fc_width (min 1 channel)
  c.stage_widths = config_dict.placeholder(tuple)  # e.g. (64, 128, 256, 512, 512)
  c.convs_per_stage = config_dict.placeholder(tuple)  # e.g. (2, 2, 3, 3, 3)
  c.fc = config_dict.placeholder(bool)  # fc6 (7x7) + fc7 (1x1) after the last pool
  c.fc_width = config_dict.placeholder(int)  # 4096 for vgg16
  # None: the last conv of every stage plus fc7 when present, i.e. for vgg16
  # conv1_2, conv2_2, conv3_3, conv4_3, conv5_3, fc7 (5568 channels).
  c.taps = config_dict.placeholder(tuple)
  c.tap_activation = "post"  # 'post' (after ReLU) | 'pre' (after BN, before ReLU)
  c.head = "mlp"  # 'mlp' | 'linear'
  c.mlp_widths = (4096, 4096)
  c.dropout = 0.5
  c.hypercolumn_dropout = 0.0
  c.head_init_std = 0.001
  c.trunk_init_std = 0.01
  c.conv_bias = True
  c.bn_momentum = 0.9
  c.bn_epsilon = 1e-5
  c.dense_chunk_size = 8192  # pixels per image per head call at dense inference
  c.dtype = "float32"  # compute dtype: 'float32' | 'bfloat16' | 'float16'
  return c


def trunk_spec(model_config: ml_collections.ConfigDict) -> VGGSpec:
  """The trunk architecture a config asks for: preset, overrides, width multiplier."""
  name = model_config.trunk
  if name not in PRESETS:
    raise ValueError(f"Unknown model.trunk {name!r}; choose one of {tuple(PRESETS)}.")
  base = PRESETS[name]
  fields = {}
  for key in ("stage_widths", "convs_per_stage", "fc", "fc_width"):
    value = model_config.get(key)
    if value is None and base is not None:
      value = getattr(base, key)
    fields[key] = value
  if name == "vgg":
    missing = [k for k in ("stage_widths", "convs_per_stage") if fields[k] is None]
    if missing:
      raise ValueError(
        f"model.trunk='vgg' needs model.{' and model.'.join(missing)} "
        "(or use a preset trunk: 'vgg16', 'vgg_small')."
      )
    fields["fc"] = bool(fields["fc"]) if fields["fc"] is not None else False
    fields["fc_width"] = fields["fc_width"] if fields["fc_width"] is not None else 4096
  multiplier = float(model_config.get("width_multiplier", 1.0))
  if multiplier <= 0:
    raise ValueError(f"model.width_multiplier must be > 0, got {multiplier}.")

  def scale(width):
    return max(1, int(round(int(width) * multiplier)))

  return VGGSpec(
    stage_widths=tuple(scale(w) for w in fields["stage_widths"]),
    convs_per_stage=tuple(int(n) for n in fields["convs_per_stage"]),
    fc=bool(fields["fc"]),
    fc_width=scale(fields["fc_width"]),
  )


def _taps(model_config, spec: VGGSpec):
  taps = model_config.get("taps")
  if taps is None:
    return spec.default_taps()
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
    bn_axis_name: 'batch' when the step runs under ``jax.pmap(axis_name='batch')``
      so BatchNorm averages statistics over devices; None on one device or a mesh.

  Returns:
    an unbound PixelNet; ``model.init(key, images, points)`` makes its variables.
  """
  defaults = default_model_config()
  unknown = sorted(set(model_config.keys()) - set(defaults.keys()))
  if unknown:
    raise ValueError(f"Unknown model config fields {unknown}; known: {sorted(defaults.keys())}.")
  cfg = defaults
  cfg.update(dict(model_config.items()))
  if int(num_outputs) < 1:
    raise ValueError(f"num_outputs must be >= 1, got {num_outputs}.")
  spec = trunk_spec(cfg)
  taps = _taps(cfg, spec)
  if cfg.head not in HEADS:
    raise ValueError(f"Unknown model.head {cfg.head!r}; choose one of {HEADS}.")
  if cfg.tap_activation not in TAP_ACTIVATIONS:
    raise ValueError(
      f"Unknown model.tap_activation {cfg.tap_activation!r}; choose one of {TAP_ACTIVATIONS}."
    )
  if cfg.dtype not in _DTYPES:
    raise ValueError(f"Unknown model.dtype {cfg.dtype!r}; choose one of {tuple(_DTYPES)}.")
  for key in ("dropout", "hypercolumn_dropout"):
    if not 0.0 <= float(cfg[key]) < 1.0:
      raise ValueError(f"model.{key} must be in [0, 1), got {cfg[key]}.")
  if int(cfg.dense_chunk_size) < 1:
    raise ValueError(f"model.dense_chunk_size must be >= 1, got {cfg.dense_chunk_size}.")
  if any(int(w) < 1 for w in cfg.mlp_widths):
    raise ValueError(f"model.mlp_widths must be positive, got {cfg.mlp_widths}.")
  return PixelNet(
    spec=spec,
    taps=taps,
    num_outputs=int(num_outputs),
    tap_activation=cfg.tap_activation,
    head_type=cfg.head,
    mlp_widths=tuple(int(w) for w in cfg.mlp_widths),
    dropout=float(cfg.dropout),
    hypercolumn_dropout=float(cfg.hypercolumn_dropout),
    head_init_std=float(cfg.head_init_std),
    trunk_init_std=float(cfg.trunk_init_std),
    conv_bias=bool(cfg.conv_bias),
    bn_momentum=float(cfg.bn_momentum),
    bn_epsilon=float(cfg.bn_epsilon),
    bn_axis_name=bn_axis_name,
    dense_chunk_size=int(cfg.dense_chunk_size),
    dtype=_DTYPES[cfg.dtype],
  )
