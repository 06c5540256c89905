"""The benchmark scripts run end to end on a tiny config and print what they promise."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_step_variants_times_variants_and_reports_memory_ratios():
  out = subprocess.run(
    [
      sys.executable, os.path.join(REPO, "benchmarks/step_variants.py"),
      "--config", os.path.join(REPO, "tests/tiny_config.py"), "--rounds", "1",
      "--variant", "fp32=model.dtype:float32", "--variant", "bf16=model.dtype:'bfloat16'",
      "--variant", "dense=task.sampling:dense;batch_size:8", "--memory_only", "dense",
    ],
    capture_output=True, text=True, timeout=120, check=True,
  )  # fmt: skip
  result = json.loads(out.stdout)
  fp32, bf16, dense = (result["variants"][k] for k in ("fp32", "bf16", "dense"))
  assert result["reference"] == "fp32" and bf16["dtype"] == "bfloat16"
  assert fp32["step_s_median"] > 0 and bf16["step_s_median"] > 0 and "step_s_median" not in dense
  assert dense["pixels_per_step"] == 8 * 64 * 64 and fp32["pixels_per_step"] == 8 * 64
  if fp32["memory"]:  # CPU XLA reports it; the dense step needs more working memory
    assert result["ratios"]["dense"]["temp_memory_vs_reference"] > 1.0
  assert result["ratios"]["bf16"]["step_time_vs_reference"] > 0
