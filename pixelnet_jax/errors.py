"""The project's error types: bad config values and bad data, caught at the edges."""

from __future__ import annotations


class ConfigError(ValueError):
  """A config value that cannot work; the message names the key and the fix."""


class DataError(ValueError):
  """Data that does not fit the task (e.g. a class id >= num_classes)."""


class CheckpointError(ValueError):
  """No usable checkpoint where one is expected; the message names the folder and the file."""
