"""Test-wide setup: 8 host devices (for pmap/mesh tests) before JAX initialises."""

import os

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import pytest  # noqa: E402


@pytest.fixture
def test_data_dir():
  """The shared real-data samples; skips when PIXELNET_TEST_DATA is unset."""
  path = os.environ.get("PIXELNET_TEST_DATA")
  if not path:
    pytest.skip(
      "PIXELNET_TEST_DATA is not set (point it at the shared data samples, "
      "e.g. ../shared/data, as .ci/run does)."
    )
  if not os.path.isdir(path):
    pytest.skip(f"PIXELNET_TEST_DATA={path} is not a directory.")
  return path
