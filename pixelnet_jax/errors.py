"""The project's error types: bad config values and bad data, caught at the edges."""

from __future__ import annotations


class ConfigError(ValueError):
  """A config value that cannot work; the message names the key and the fix."""


class DataError(ValueError):
  """Data that is unreadable or does not fit the task: a corrupt or truncated file, a
  label whose size differs from its image, a class id >= num_classes."""


class MissingDataError(FileNotFoundError):
  """A data file or folder is not where the dataset expects it (the message says where
  to download it and the tree expected)."""


class CheckpointError(ValueError):
  """No usable checkpoint where one is expected; the message names the folder and the file."""
