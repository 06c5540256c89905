"""Cross-cutting helpers: durations and the progress logger."""

from __future__ import annotations

import logging
import sys


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
  logger = logging.getLogger("pixelnet_jax")
  if not logger.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
  return logger
