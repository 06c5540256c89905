"""Cross-cutting helpers: parameter-tree masks by name, timing and formatting."""

from __future__ import annotations

import re
from typing import Any

import flax
import jax

# Weight decay applies to conv/dense kernels only, never to biases or BatchNorm
# (the original solver's decay_mult 0 on biases). Split first-layer kernels of
# the head are named ``first_<tap>``; their bias is ``first_bias``.
DECAYED_PARAM = r"(^|/)(kernel|first_(?!bias$)[^/]+)$"


def path_string(path) -> str:
  """'trunk/conv1_1/kernel' from a tree path of dict keys."""
  parts = []
  for entry in path:
    key = getattr(entry, "key", getattr(entry, "name", entry))
    parts.append(str(key))
  return "/".join(parts)


def tree_mask_by_name(tree: Any, pattern: str) -> Any:
  """A bool tree: True where the leaf's '/'-joined path matches ``pattern``."""
  regex = re.compile(pattern)
  return jax.tree_util.tree_map_with_path(
    lambda path, _: bool(regex.search(path_string(path))), tree
  )


def weight_decay_mask(params: Any) -> Any:
  return tree_mask_by_name(flax.core.unfreeze(params), DECAYED_PARAM)


def format_duration(seconds: float) -> str:
  seconds = max(0, int(round(seconds)))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  if minutes:
    return f"{minutes}m{secs:02d}s"
  return f"{secs}s"


def get_logger():
  """The project's progress logger: INFO lines to stderr, apart from absl's.

  Libraries underneath (orbax) log a lot through absl at INFO; the launcher
  turns absl down to WARNING and keeps these lines.
  """
  import logging  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  logger = logging.getLogger("pixelnet_jax")
  if not logger.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
  return logger
