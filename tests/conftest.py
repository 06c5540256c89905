"""Test-wide setup: 8 host devices (for pmap/mesh tests) before JAX initialises."""

import os

_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests: "ci" (the default) is small and derandomized, so every CI run tries the
# same examples and a failure reproduces; HYPOTHESIS_PROFILE=dev searches more widely.
settings.register_profile(
  "ci",
  max_examples=25,
  deadline=None,
  derandomize=True,
  database=None,
  print_blob=True,
  suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
  "dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def test_data_dir():
  """The shared real-data samples.

  Skips when PIXELNET_TEST_DATA is unset, but fails when it is set to something that is
  not a directory: a CI that points at the wrong place must not pass by skipping.
  """
  path = os.environ.get("PIXELNET_TEST_DATA")
  if not path:
    pytest.skip(
      "PIXELNET_TEST_DATA is not set (point it at the shared data samples, "
      "e.g. ../shared/data, as .ci/run does)."
    )
  if not os.path.isdir(path):
    pytest.fail(
      f"PIXELNET_TEST_DATA={path} is set but is not a directory; unset it to skip "
      "the real-data tests or point it at the shared data samples.",
      pytrace=False,
    )
  return path
