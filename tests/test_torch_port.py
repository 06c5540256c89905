"""The PyTorch port of benchmarks/ computes the framework's function.

Needs torch (the ``bench`` extra); without it the torch tests skip. The FLOP count and the
check that the package never imports torch run everywhere.
"""

import importlib.util
import os
import re
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "benchmarks")


def _load(name):
  if BENCH not in sys.path:
    sys.path.insert(0, BENCH)
  spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def bench():
  pytest.importorskip("torch")
  return _load("step_vs_torch")


def test_package_never_imports_torch():
  pattern = re.compile(r"^\s*(import torch|from torch)", re.M)
  for root, _, files in os.walk(os.path.join(REPO, "pixelnet_jax")):
    for name in files:
      if name.endswith(".py"):
        with open(os.path.join(root, name)) as f:
          assert not pattern.search(f.read()), f"{name} imports torch"


def test_flop_count_matches_vgg16():
  from pixelnet_jax import models

  flops = _load("step_vs_torch").count_flops(models.VGG16, ("conv5_3",), (), 21, (224, 224), 1, 1)
  # VGG-16's 13 convs at 224^2: 15.35 GMAC (the usual figure, 15.47 with fc6-8 as Dense).
  assert abs(flops["trunk_forward"] / 2 / 15.35e9 - 1) < 0.005
  assert flops["head_forward_per_pixel"] == 2 * 512 * 21
  assert flops["step"] == 3 * flops["forward"]


def test_grid_sample_read_matches_bilinear_read(bench):
  import jax.numpy as jnp
  import torch

  from pixelnet_jax import hypercolumn

  torch_port = bench.torch_port
  rng = np.random.default_rng(0)
  height, width = 37, 45  # a stride-8 ceil-mode map is 5 x 6 and covers 40 x 48 pixels
  points = np.concatenate(
    [
      rng.uniform(-3, [height + 3, width + 3], (60, 2)),
      np.array([[0, 0], [height - 1, width - 1], [36.5, 0.25]]),
    ]
  ).astype(np.float32)
  for stride in (1, 2, 8, 32):
    h, w = -(-height // stride), -(-width // stride)
    fmap = rng.normal(size=(h, w, 3)).astype(np.float32)
    want = np.asarray(hypercolumn.bilinear_read(jnp.asarray(fmap), jnp.asarray(points), stride))
    got = torch_port.read_taps(
      {"t": torch.from_numpy(fmap.transpose(2, 0, 1)[None].copy())},
      ("t",),
      (stride,),
      torch.from_numpy(points[None]),
    )[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"stride {stride}")


def test_port_matches_jax_model(bench):
  """Weights copied from the flax model: outputs at the sampled points (eval and train
  mode), the loss and the gradients agree."""
  result = bench.compare_forward()
  print(result)
  assert result["eval_max_rel_diff"] < 1e-4
  assert result["train_max_rel_diff"] < 1e-4
  assert result["loss_rel_diff"] < 1e-4
  for name, diff in result["grad_max_rel_diff"].items():
    assert diff < 1e-3, name


def test_optimizer_decays_kernels_only(bench):
  import jax

  from pixelnet_jax import config_base, models

  torch_port = bench.torch_port
  config = bench.tiny_config()
  task, crop = config_base.validate_config(config, 1)
  model = models.create_model(config.model, task.num_outputs)
  variables = model.init(
    jax.random.key(0), np.zeros((1, *crop, 3), np.float32), np.zeros((1, 1, 2), np.float32)
  )
  decayed = sum(
    int(np.prod(np.shape(p)))
    for p, m in zip(
      jax.tree.leaves(models.unbox(variables["params"])),
      jax.tree.leaves(models.decay_mask(variables["params"])),
    )
    if m
  )
  tmodel = torch_port.TorchPixelNet(torch_port.spec_from_config(config, task.num_outputs))
  groups = torch_port.make_optimizer(tmodel, wd=5e-4).param_groups
  assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0
  assert sum(p.numel() for p in groups[0]["params"]) == decayed
  total = sum(int(np.prod(np.shape(p))) for p in jax.tree.leaves(models.unbox(variables["params"])))
  assert sum(p.numel() for p in tmodel.parameters()) == total


def test_smoke_run_prints_json(bench, capsys):
  bench.main(
    [
      "--trunk",
      "small",
      "--size",
      "32",
      "--points",
      "16",
      "--images",
      "2",
      "--widths",
      "16",
      "--steps",
      "1",
      "--matmul_size",
      "64",
      "--matmul_repeats",
      "1",
      "--no_check",
      "--pixels_sweep",
      "--sweep_points",
      "8,2000",
    ]
  )
  import json

  out = json.loads(capsys.readouterr().out)
  for key in ("sampled", "dense", "pixels_sweep", "peak_fp32_matmul", "load_average_end"):
    assert key in out
  assert out["sampled"]["jax"]["sampled_fraction"] == 1.0
  assert out["sampled"]["ratio_jax_over_torch_step_s"] > 0
  assert out["sampled"]["torch"]["loss_first"] == pytest.approx(
    out["sampled"]["jax"]["loss_first"], rel=1e-3
  )
  assert out["pixels_sweep"][1]["skipped"]
