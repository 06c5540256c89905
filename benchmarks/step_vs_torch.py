"""The framework's train step side by side with a hand-written PyTorch port, in one run.

Default shapes: the paper step (experiments/configs/default.py: VGG-16 with BN, 224^2,
5 images x 2,000 pixels, MLP 4096^2, SGD momentum 0.9). Prints one JSON object.

- JAX: the real step through the public API, as benchmarks/train_step.py
  (``config_base.validate_config``, ``models.create_model``, ``create_train_state``,
  ``parallel.ParallelStep``). Its task is wrapped so that ``sample`` returns the pixels
  carried in the batch (``bench_points``), i.e. the same pixels the torch port gets; the
  targets, loss, model and optimizer are the framework's own.
- torch: ``benchmarks/torch_port.py``, same trunk, reads, head, loss and optimizer.
- Pixels: drawn once with numpy from ``--seed``, uniform over the crop without
  replacement, and fed to both. Images and labels: one batch of the procedural dataset,
  fed to both.
- Dense: every pixel of the crop through the head. torch runs it with the same code; JAX
  runs ``config.task.sampling='dense'`` if the task accepts it, else reports "unavailable".
- FLOPs are counted analytically (convs and the head's matmuls, forward x 3 for
  forward + backward) and divided by a 4096^2 fp32 matmul timed on each framework's device
  in the same run.

    python benchmarks/step_vs_torch.py                                       # paper step
    python benchmarks/step_vs_torch.py --trunk small --size 64 --points 256 --images 2 \
      --widths 256,256 --steps 3 --matmul_size 1024                          # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import bench_common
import jax
import jax.numpy as jnp
import numpy as np

from pixelnet_jax import config_base, models, parallel, sampling
from pixelnet_jax.state import create_train_state
from pixelnet_jax.tasks import base as task_base

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POINTS_KEY = "bench_points"
SWEEP_POINTS = (500, 1000, 2000, 4000, 8000)

try:  # torch is optional (the `bench` extra): without it only the JAX side runs.
  import torch

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import torch_port
except ImportError as e:  # pragma: no cover - depends on the environment
  torch = None
  torch_port = None
  TORCH_IMPORT_ERROR = str(e)


def make_config(args):
  """The config at the requested shapes (flags override the config file)."""
  config = config_base.load_config_file(args.config)
  if args.trunk is not None:
    config.model.trunk = {"vgg16": "vgg16", "small": "vgg_small"}[args.trunk]
  if args.size is not None:
    config.crop_size = int(args.size)
  if args.points is not None:
    config.points_per_image = int(args.points)
  if args.images is not None:
    config.batch_size = int(args.images)
  if args.widths is not None:
    config.model.heads.mlp.widths = tuple(int(w) for w in args.widths.split(",") if w)
  config.num_devices = 1  # one device on each side
  return config


# ----------------------------------------------------------------------------
# The same pixels for both frameworks.


class FixedPointsTask:
  """The config's task, except that ``sample`` returns the pixels in ``batch[POINTS_KEY]``.

  Everything else (sample mask, targets, loss) is the wrapped task's own, so the step is
  the framework's; only where the pixels come from changes.
  """

  def __init__(self, task):
    self._task = task

  def __getattr__(self, name):
    return getattr(self._task, name)

  def select_labels(self, batch):
    labels = self._task.select_labels(batch)
    labels[POINTS_KEY] = batch[POINTS_KEY]
    return labels

  def sample(self, key, labels, num_points):
    del key
    coords = labels[POINTS_KEY].astype(jnp.int32)
    if coords.shape[0] != num_points:
      raise ValueError(f"{POINTS_KEY} has {coords.shape[0]} points, expected {num_points}.")
    rest = {k: v for k, v in labels.items() if k != POINTS_KEY}
    mask = task_base.gather(self._task.sample_mask(rest), coords)
    return sampling.PixelSample(coords=coords, mask=mask)


def sample_points(seed: int, images: int, crop, num_points: int) -> np.ndarray:
  """[B, N, 2] int32 (row, col), uniform over the crop without replacement per image."""
  rng = np.random.default_rng(seed)
  height, width = crop
  flat = np.stack([rng.choice(height * width, num_points, replace=False) for _ in range(images)])
  return np.stack([flat // width, flat % width], axis=-1).astype(np.int32)


def dense_points(images: int, crop) -> np.ndarray:
  rows, cols = np.meshgrid(np.arange(crop[0]), np.arange(crop[1]), indexing="ij")
  grid = np.stack([rows.reshape(-1), cols.reshape(-1)], axis=-1).astype(np.int32)
  return np.broadcast_to(grid, (images,) + grid.shape).copy()


def procedural_batch(config, task, crop, seed: int = 0) -> dict:
  """Batch 0 of the procedural data at the config's batch size and crop."""
  return bench_common.procedural_batch(config.batch_size, crop, task, seed)


# ----------------------------------------------------------------------------
# FLOPs.


def count_flops(spec, taps, head_widths, num_outputs, crop, images, points) -> dict:
  """Analytic multiply-add FLOPs (2 per MAC) of one step.

  Trunk: every conv up to the deepest tap at its ceil-mode map size, the full k x k
  kernel counted at every output cell. Head: the matmuls of every layer per pixel.
  Not counted: BatchNorm, ReLU, pools, bilinear reads, loss, optimizer (elementwise).
  A step is forward x 3 (backward = 2 x forward, the usual convention; the first conv
  needs no input gradient, so it slightly overcounts).
  """
  height, width = crop
  order = list(spec.tap_names)
  last = max(order.index(t) for t in taps)
  layers = []  # (cin, cout, k, pools before)
  cin = 3
  for s, (w, n) in enumerate(zip(spec.stage_widths, spec.convs_per_stage)):
    for _ in range(n):
      layers.append((cin, int(w), 3, s))
      cin = int(w)
  if spec.fc:
    pools = len(spec.stage_widths)
    layers += [
      (cin, int(spec.fc_width), 7, pools),
      (int(spec.fc_width), int(spec.fc_width), 1, pools),
    ]
  trunk = 0
  for cin, cout, k, pools in layers[: last + 1]:
    h = -(-height // 2**pools)
    w = -(-width // 2**pools)
    trunk += 2 * k * k * cin * cout * h * w
  trunk *= images
  channels = sum(spec.tap_channels(t) for t in taps)
  dims = [channels] + [int(w) for w in head_widths] + [int(num_outputs)]
  per_pixel = sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))
  head = per_pixel * images * points
  forward = trunk + head
  return {
    "trunk_forward": int(trunk),
    "head_forward": int(head),
    "head_forward_per_pixel": int(per_pixel),
    "forward": int(forward),
    "step": int(3 * forward),
  }


# ----------------------------------------------------------------------------
# Peak matmul.


def jax_matmul_peak(n: int, repeats: int) -> dict:
  a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
  f = jax.jit(jnp.dot)
  f(a, b).block_until_ready()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    f(a, b).block_until_ready()
    times.append(time.perf_counter() - start)
  return {"n": n, "best_s": min(times), "flops_per_s": 2 * n**3 / min(times)}


def torch_matmul_peak(n: int, repeats: int, device) -> dict:
  gen = torch.Generator().manual_seed(1)
  a = torch.randn(n, n, generator=gen).to(device)
  b = torch.randn(n, n, generator=gen).to(device)
  torch.mm(a, b)
  sync(device)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    torch.mm(a, b)
    sync(device)
    times.append(time.perf_counter() - start)
  return {"n": n, "best_s": min(times), "flops_per_s": 2 * n**3 / min(times)}


def sync(device):
  if torch is not None and str(device).startswith("cuda"):
    torch.cuda.synchronize()


# ----------------------------------------------------------------------------
# Timed steps.


def timed(one, warmup: int, steps: int):
  """Calls ``one()`` (one synchronised step, returns the loss) ``warmup`` times untimed
  for the JSON's ``warmup_s``, then ``steps`` times timed."""
  warm, times, losses = [], [], []
  for i in range(warmup + steps):
    start = time.perf_counter()
    losses.append(one())
    (warm if i < warmup else times).append(time.perf_counter() - start)
  return warm, times, losses


def summarize(warm, times, losses, images, pixels, step_flops, peak):
  median = statistics.median(times)
  out = {
    "first_step_s": round(warm[0], 4) if warm else None,
    "warmup_s": [round(t, 4) for t in warm],
    "step_s_median": round(median, 4),
    "step_s_min": round(min(times), 4),
    "steps": len(times),
    "images_per_s": round(images / median, 3),
    "pixels_per_s": round(pixels / median, 1),
    "flops_per_s": float(f"{step_flops / median:.4g}"),
    "fraction_of_peak": round(step_flops / median / peak, 4) if peak else None,
    "loss_first": round(losses[0], 5),
    "loss_last": round(losses[-1], 5),
  }
  return out


def jax_step(config, task, crop, batch, points, warmup, steps, step_flops, peak, dense=False):
  """Times the framework's step; ``dense`` uses the task's own sampling ('dense')."""
  model = models.create_model(config.model, task.num_outputs)
  state = create_train_state(config, model, jax.random.key(0), crop)
  step_model = models.create_model(config.model, task.num_outputs, bn_axis_name=parallel.AXIS)
  devices = parallel.select_devices(config)
  step_task = task if dense else FixedPointsTask(task)
  step_fn = parallel.ParallelStep(config, step_model, step_task, devices)
  state = step_fn.put_state(state)
  batch = dict(batch)
  if not dense:
    batch[POINTS_KEY] = points
  metrics = None

  def one():
    nonlocal state, metrics
    state, metrics = step_fn(state, batch)
    return float(metrics["loss"])  # waits for the step

  warm, times, losses = timed(one, warmup, steps)
  out = summarize(
    warm,
    times,
    losses,
    batch["image"].shape[0],
    points.shape[0] * points.shape[1],
    step_flops,
    peak,
  )
  out["sampled_fraction"] = round(float(metrics["sampled_fraction"]), 4)
  return out


def torch_step(
  spec,
  config,
  batch,
  points,
  warmup,
  steps,
  step_flops,
  peak,
  device,
  ignore_label,
  channels_last=False,
):
  torch.manual_seed(0)
  model = torch_port.TorchPixelNet(spec).to(device)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(memory_format=fmt)
  model.train()
  opt = config.optimizer
  optimizer = torch_port.make_optimizer(
    model,
    lr=float(opt.learning_rate),
    momentum=float(opt.sgd.momentum),
    wd=float(opt.weight_decay),
  )
  images = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2)))
  images = images.to(device).contiguous(memory_format=fmt)
  labels = batch["label"]
  b = np.arange(points.shape[0])[:, None]
  targets = labels[b, points[..., 0], points[..., 1]].astype(np.int64)
  if "valid" in batch:
    valid = batch["valid"][b, points[..., 0], points[..., 1]]
    targets = np.where(valid, targets, ignore_label)
  targets = torch.from_numpy(targets).to(device)
  pts = torch.from_numpy(points.astype(np.float32)).to(device)

  def one():
    loss = torch_port.train_step(model, optimizer, images, pts, targets, ignore_label)
    loss = float(loss)  # synchronises
    sync(device)
    return loss

  warm, times, losses = timed(one, warmup, steps)
  return summarize(
    warm, times, losses, points.shape[0], points.shape[0] * points.shape[1], step_flops, peak
  )


def ratio(jax_result, torch_result):
  if not isinstance(jax_result, dict) or not isinstance(torch_result, dict):
    return None
  return round(jax_result["step_s_median"] / torch_result["step_s_median"], 3)


# ----------------------------------------------------------------------------
# Forward check on a tiny config (also tests/test_torch_port.py).


def tiny_config():
  """A small trunk with every kind of layer (odd sizes so ceil-mode pools pad, fc6/fc7)."""
  config = config_base.paper_config("segmentation")
  config.task.num_classes = 5
  config.model.trunk = "vgg"
  config.model.trunks.vgg.stage_widths = (4, 8, 8)
  config.model.trunks.vgg.convs_per_stage = (1, 2, 1)
  config.model.trunks.vgg.fc = True
  config.model.trunks.vgg.fc_width = 16
  config.model.taps = ("conv1_1", "conv2_2", "conv3_1", "fc6", "fc7")
  config.model.heads.mlp.widths = (32, 24)
  config.model.heads.mlp.dropout = 0.0
  with config.ignore_type():
    config.crop_size = (37, 45)  # odd, non-square: the ceil-mode pools pad
  config.batch_size = 2
  config.points_per_image = 50
  config.num_devices = 1
  return config


def perturbed_variables(variables, seed: int = 0):
  """Variables with every leaf redrawn at a scale that keeps activations O(1): kernels
  ~ N(0, 2 / fan_in), biases and BatchNorm offsets ~ N(0, 0.1), scales ~ U[0.5, 1.5],
  running means ~ N(0, 0.5), running variances ~ U[0.5, 2], so a mix-up of any layer,
  axis or statistic shows."""
  rng = np.random.default_rng(seed)

  def redraw(path, x):
    name = str(path[-1].key)
    shape = np.shape(x)
    if name == "kernel" or name.startswith("first_") and name != "first_bias":
      fan_in = int(np.prod(shape[:-1]))
      v = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
    elif name == "scale":
      v = rng.uniform(0.5, 1.5, shape)
    elif name == "var":
      v = rng.uniform(0.5, 2.0, shape)
    elif name == "mean":
      v = rng.normal(0, 0.5, shape)
    else:
      v = rng.normal(0, 0.1, shape)
    return jnp.asarray(v, jnp.float32)

  return jax.tree_util.tree_map_with_path(redraw, variables)


def compare_forward(config=None, seed: int = 0) -> dict:
  """Same weights, images and pixels in both: max |jax - torch| / max |jax| of the outputs
  at the sampled points, in eval mode (running statistics) and train mode (batch
  statistics; needs dropout 0), and of the loss gradients of a few parameters."""
  config = config or tiny_config()
  task, crop = config_base.validate_config(config, 1)
  model = models.create_model(config.model, task.num_outputs)
  images_np = np.random.default_rng(seed).normal(size=(int(config.batch_size), *crop, 3))
  images_np = images_np.astype(np.float32)
  points_np = sample_points(seed, int(config.batch_size), crop, int(config.points_per_image))
  # Off-pixel points too: reads between pixels and past the borders.
  extra = np.array([[-0.7, -3.0], [crop[0] - 0.2, crop[1] + 2.5], [10.3, 7.9], [0.5, 0.25]])
  points_f = np.concatenate(
    [points_np.astype(np.float32), np.broadcast_to(extra, (points_np.shape[0], 4, 2))], axis=1
  ).astype(np.float32)
  variables = models.unbox(
    model.init(jax.random.key(seed), jnp.asarray(images_np), jnp.asarray(points_f))
  )
  variables = perturbed_variables(variables, seed)
  spec = torch_port.spec_from_config(config, task.num_outputs)
  tmodel = torch_port.TorchPixelNet(spec)
  torch_port.copy_flax_weights(tmodel, variables["params"], variables["batch_stats"])
  t_images = torch.from_numpy(images_np.transpose(0, 3, 1, 2).copy())
  t_points = torch.from_numpy(points_f)

  def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))

  out = {}
  jax_eval = model.apply(variables, jnp.asarray(images_np), jnp.asarray(points_f), train=False)
  tmodel.eval()
  with torch.no_grad():
    torch_eval = tmodel(t_images, t_points).numpy()
  out["eval_max_rel_diff"] = rel(jax_eval, torch_eval)

  # Train mode: batch statistics; loss on the integer points (targets random classes).
  targets_np = (
    np.random.default_rng(seed + 1)
    .integers(0, task.num_outputs, points_f.shape[:2])
    .astype(np.int32)
  )

  def jax_loss(params):
    outputs, _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      jnp.asarray(images_np),
      jnp.asarray(points_f),
      train=True,
      mutable=["batch_stats"],
    )
    k = outputs.shape[-1]
    mask = jnp.ones(targets_np.shape, bool)
    return task.loss(
      outputs.reshape(-1, k), jnp.asarray(targets_np).reshape(-1), mask.reshape(-1)
    ), outputs

  (loss_j, outputs_j), grads_j = jax.value_and_grad(jax_loss, has_aux=True)(variables["params"])
  tmodel.train()
  outputs_t = tmodel(t_images, t_points)
  loss_t = torch.nn.functional.cross_entropy(
    outputs_t.reshape(-1, outputs_t.shape[-1]),
    torch.from_numpy(targets_np.astype(np.int64)).reshape(-1),
  )
  loss_t.backward()
  out["train_max_rel_diff"] = rel(outputs_j, outputs_t.detach().numpy())
  out["loss_rel_diff"] = rel(loss_j, loss_t.item())
  grads = {
    "conv1_1.kernel": (
      grads_j["trunk"]["conv1_1"]["kernel"],
      tmodel.trunk.layers["conv1_1"].conv.weight.grad.permute(2, 3, 1, 0),
    ),
    "fc6.kernel": (
      grads_j["trunk"]["fc6"]["kernel"],
      tmodel.trunk.layers["fc6"].conv.weight.grad.permute(2, 3, 1, 0),
    ),
    "head.first": (
      np.concatenate([grads_j["head"]["first"][f"first_{t}"] for t in spec.taps], 0),
      tmodel.head[0].weight.grad.T,
    ),
    "head.output.kernel": (grads_j["head"]["output"]["kernel"], tmodel.head[-1].weight.grad.T),
  }
  out["grad_max_rel_diff"] = {k: rel(a, b.numpy()) for k, (a, b) in grads.items()}
  out["max_rel_diff"] = max(out["eval_max_rel_diff"], out["train_max_rel_diff"])
  out["points"] = int(points_f.shape[0] * points_f.shape[1])
  out["crop"] = list(crop)
  return out


# ----------------------------------------------------------------------------


def machine_info():
  info = {
    "machine": platform.machine(),
    "node": platform.node(),
    "cpu_count": os.cpu_count(),
    "system": platform.platform(),
  }
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          info["cpu_model"] = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return info


def versions():
  import flax
  import jaxlib

  v = {
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "flax": flax.__version__,
    "numpy": np.__version__,
  }
  v["torch"] = torch.__version__ if torch is not None else None
  return v


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--config", default=os.path.join(REPO, "experiments/configs/default.py"))
  p.add_argument("--trunk", choices=("vgg16", "small"), default=None, help="default: the config's")
  p.add_argument("--size", type=int, default=None, help="crop side (default: the config's, 224)")
  p.add_argument("--points", type=int, default=None, help="pixels per image (default 2000)")
  p.add_argument("--images", type=int, default=None, help="images per step (default 5)")
  p.add_argument("--widths", default=None, help="MLP hidden widths, e.g. 4096,4096")
  p.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up")
  p.add_argument(
    "--warmup",
    type=int,
    default=2,
    help="untimed steps first (JAX compiles the step on the first; the second absorbs "
    "one-off allocations)",
  )
  p.add_argument(
    "--dense_steps", type=int, default=None, help="timed dense steps (default --steps)"
  )
  p.add_argument("--no_dense", action="store_true", help="skip the dense steps")
  p.add_argument(
    "--dense_images",
    type=int,
    default=None,
    help="images in a dense step (default: --images; fewer if a dense step does not fit)",
  )
  p.add_argument("--pixels_sweep", action="store_true", help="also time 500 ... 8000 pixels/image")
  p.add_argument("--sweep_points", default=",".join(map(str, SWEEP_POINTS)))
  p.add_argument("--matmul_size", type=int, default=4096, help="side of the peak fp32 matmul")
  p.add_argument("--matmul_repeats", type=int, default=5)
  p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
  p.add_argument("--torch_device", default="auto", help="auto (cuda if available) | cpu | cuda")
  p.add_argument(
    "--torch_channels_last", action="store_true", help="torch model and images in NHWC"
  )
  p.add_argument(
    "--fp32_strict",
    action="store_true",
    help="true fp32 matmuls/convs on both sides (jax precision 'highest', torch TF32 off); "
    "default: each framework's own defaults, recorded in the JSON",
  )
  p.add_argument("--no_check", action="store_true", help="skip the tiny forward check")
  p.add_argument("--only", choices=("both", "jax", "torch"), default="both")
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  load_start = list(os.getloadavg())
  started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
  run_torch = args.only in ("both", "torch") and torch is not None
  run_jax = args.only in ("both", "jax")
  if args.fp32_strict:
    jax.config.update("jax_default_matmul_precision", "highest")
  config = make_config(args)
  devices = parallel.select_devices(config)
  task, crop = config_base.validate_config(config, len(devices))
  if config.task.name != "segmentation" or config.model.head != "mlp":
    raise SystemExit("step_vs_torch compares the segmentation task with the MLP head only.")
  trunk_spec = models.build_trunk(config.model.trunk, config.model.trunks).spec
  taps = tuple(config.model.taps) if config.model.get("taps") else trunk_spec.default_taps()
  widths = tuple(int(w) for w in config.model.heads.mlp.widths)
  images = int(config.batch_size)
  num_points = int(config.points_per_image)

  paper_size = bool(
    config.model.trunk == "vgg16"
    and tuple(crop) == (224, 224)
    and images == 5
    and num_points == 2000
    and widths == (4096, 4096)
    and tuple(taps) == tuple(models.VGG16.default_taps())
  )
  result = {
    "benchmark": "step_vs_torch",
    "date_utc": started,
    "command": " ".join(["python", "benchmarks/step_vs_torch.py"] + list(sys.argv[1:])),
    "paper_size": paper_size,
    "run_kind": "paper step" if paper_size else "small run at reduced shapes, not the paper step",
    "machine": machine_info(),
    "load_average_start": [round(x, 2) for x in load_start],
    "versions": versions(),
    "shapes": {
      "config": os.path.relpath(args.config, REPO),
      "trunk": config.model.trunk,
      "crop": list(crop),
      "images": images,
      "points_per_image": num_points,
      "taps": list(taps),
      "hypercolumn_channels": int(sum(trunk_spec.tap_channels(t) for t in taps)),
      "head_widths": list(widths),
      "num_classes": int(task.num_outputs),
      "dropout": float(config.model.heads.mlp.dropout),
      "optimizer": f"{config.optimizer.name} lr {config.optimizer.learning_rate} "
      f"momentum {config.optimizer.sgd.momentum} wd {config.optimizer.weight_decay} (kernels)",
    },
  }
  jdev = jax.devices()[0]
  result["jax_device"] = {
    "platform": jdev.platform,
    "device_kind": jdev.device_kind,
    "default_matmul_precision": jax.config.jax_default_matmul_precision,
  }
  torch_device = None
  if torch is None:
    result["torch_device"] = f"unavailable: {TORCH_IMPORT_ERROR}"
  else:
    want = args.torch_device
    if want == "auto":
      want = "cuda" if torch.cuda.is_available() else "cpu"
    torch_device = torch.device(want)
    threads = int(args.threads or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    if args.fp32_strict:
      torch.backends.cuda.matmul.allow_tf32 = False
      torch.backends.cudnn.allow_tf32 = False
    result["torch_device"] = {
      "device": str(torch_device),
      "name": torch.cuda.get_device_name(torch_device)
      if torch_device.type == "cuda"
      else result["machine"].get("cpu_model", "cpu"),
      "threads": torch.get_num_threads(),
      "channels_last": bool(args.torch_channels_last),
      "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
      "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }

  peak = {}
  if run_jax:
    peak["jax"] = jax_matmul_peak(args.matmul_size, args.matmul_repeats)
  if run_torch:
    peak["torch"] = torch_matmul_peak(args.matmul_size, args.matmul_repeats, torch_device)
  for v in peak.values():
    v["best_s"] = round(v["best_s"], 5)
    v["flops_per_s"] = float(f"{v['flops_per_s']:.4g}")
  result["peak_fp32_matmul"] = peak
  jax_peak = peak.get("jax", {}).get("flops_per_s")
  torch_peak = peak.get("torch", {}).get("flops_per_s")

  batch = procedural_batch(config, task, crop, args.seed)
  spec = torch_port.spec_from_config(config, task.num_outputs) if run_torch else None
  ignore = int(config.task.ignore_label)

  def compare(points, steps, jax_config=None, dense=False, batch=batch):
    n_images, n = points.shape[:2]
    flops = count_flops(trunk_spec, taps, widths, task.num_outputs, crop, n_images, n)
    entry = {
      "images": n_images,
      "pixels_per_image": n,
      "pixels_per_step": n_images * n,
      "flops": flops,
    }
    if run_jax:
      if jax_config is None:
        entry["jax"] = "unavailable"
      else:
        cfg, jtask = jax_config
        entry["jax"] = jax_step(
          cfg, jtask, crop, batch, points, args.warmup, steps, flops["step"], jax_peak, dense
        )
    if run_torch:
      entry["torch"] = torch_step(
        spec,
        config,
        batch,
        points,
        args.warmup,
        steps,
        flops["step"],
        torch_peak,
        torch_device,
        ignore,
        args.torch_channels_last,
      )
    entry["ratio_jax_over_torch_step_s"] = ratio(entry.get("jax"), entry.get("torch"))
    return entry

  points = sample_points(args.seed, images, crop, num_points)
  result["sampled"] = compare(points, args.steps, (config, task))

  if not args.no_dense:
    dense_cfg = config.copy_and_resolve_references()
    dense_cfg.task.sampling = "dense"
    dense_cfg.points_per_image = crop[0] * crop[1]
    dense_images = min(images, int(args.dense_images or images))
    dense_cfg.batch_size = dense_images
    dense_batch = {k: v[:dense_images] for k, v in batch.items()}
    jax_dense = None
    why = None
    try:
      dense_task, _ = config_base.validate_config(dense_cfg, len(devices))
      jax_dense = (dense_cfg, dense_task)
    except Exception as e:  # the 'dense' sampling mode is not in every version
      why = f"unavailable: {type(e).__name__}: {e}"
    steps = args.steps if args.dense_steps is None else args.dense_steps
    entry = compare(
      dense_points(dense_images, crop), steps, jax_dense, dense=True, batch=dense_batch
    )
    if why and run_jax:
      entry["jax"] = why
    result["dense"] = entry

  if args.pixels_sweep:
    sweep = []
    for n in (int(v) for v in args.sweep_points.split(",") if v):
      if n > crop[0] * crop[1]:
        sweep.append({"pixels_per_image": n, "skipped": "more pixels than the crop has"})
        continue
      cfg = config.copy_and_resolve_references()
      cfg.points_per_image = n
      sweep_task, _ = config_base.validate_config(cfg, len(devices))
      sweep.append(
        compare(sample_points(args.seed, images, crop, n), args.steps, (cfg, sweep_task))
      )
    result["pixels_sweep"] = sweep

  if not args.no_check and torch is not None:
    result["forward_check_tiny"] = compare_forward()

  result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
  result["notes"] = [
    "step_s_*: wall seconds per timed train step after --warmup untimed ones (warmup_s; "
    "JAX's first includes compilation); the same batch every step.",
    "ratio_jax_over_torch_step_s > 1: JAX slower.",
    "flops.step = 3 x (trunk convs + head matmuls); fraction_of_peak divides the achieved "
    "FLOP/s by the fp32 matmul peak of the same framework's device.",
    "JAX pixels come in the batch (FixedPointsTask); dense JAX uses the task's own "
    "'dense' sampling where it exists.",
  ]
  print(json.dumps(result))


if __name__ == "__main__":
  main()
