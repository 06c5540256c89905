"""Sampled hypercolumns vs dense upsampling: time and memory; prints JSON.

PixelNet's claim is that sampling a few thousand pixels and reading their
hypercolumns is far cheaper than upsampling every tap to full resolution. This
measures both, side by side in one process, on random VGG-16 tap maps
(DESIGN.md §1: conv1_2, conv2_2, conv3_3, conv4_3, conv5_3, fc7 = 5568 channels):

  sampled       ``sampling.uniform`` per image (vmapped) + ``jax.vmap(hypercolumn)``
                at the sampled pixels.
  dense_gather  every tap upsampled to [S, S] with ``jax.image.resize(..., 'linear')``,
                concatenated, then the same pixels gathered (same values as
                ``sampled``; the script checks it).
  dense_all     the same upsampling, with the loss over all pixels (FCN-style).

Each path is timed forward and forward+backward (gradient of a scalar of the read,
``0.5 * mean(h ** 2)``, w.r.t. every map), jitted, compiled ahead (compile time
reported apart), warmed up, then the median of ``--repeats`` calls with
``block_until_ready``.

The dense hypercolumn of a full batch is ``images * S**2 * 5568 * 4`` bytes (5.6 GB
for 5 images at 224), more than a small machine should hold twice for a
gradient, so the dense paths run on ``--dense-images`` images (default 1) and their
times are scaled linearly to ``--images`` (reported both ways).

  python benchmarks/sampling_hypercolumn.py            # 5 x 2,000 points at 224
  python benchmarks/sampling_hypercolumn.py --quick    # smoke run, seconds
"""

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from bench_common import memory_stats

from pixelnet_jax import hypercolumn, sampling

# (name, stride, channels) of the default VGG-16 taps at a 224 input.
VGG16_TAPS = (
  ("conv1_2", 1, 64),
  ("conv2_2", 2, 128),
  ("conv3_3", 4, 256),
  ("conv4_3", 8, 512),
  ("conv5_3", 16, 512),
  ("fc7", 32, 4096),
)
FLOAT_BYTES = 4


def tap_shapes(size: int):
  """[(name, h, w, C)] of the taps for a ``size`` x ``size`` input."""
  if size % 32:
    raise ValueError(f"--size must be a multiple of 32 (the fc7 stride), got {size}.")
  return [(name, size // s, size // s, c) for name, s, c in VGG16_TAPS]


def make_maps(key, num_images: int, shapes):
  """Random tap maps: list of [B, h, w, C] float32."""
  keys = jax.random.split(key, len(shapes))
  return [
    jax.random.normal(k, (num_images, h, w, c), jnp.float32)
    for k, (_, h, w, c) in zip(keys, shapes)
  ]


def sample_points(key, num_images: int, size: int, num_points: int):
  """Uniformly sampled pixels of every image: points [B, N, 2] float32 (row, col)."""
  valid = jnp.ones((size, size), jnp.bool_)
  keys = jax.random.split(key, num_images)
  sample = jax.vmap(lambda k: sampling.uniform(k, valid, num_points))(keys)
  return sampling.sample_points(sample)


def sampled_read(maps, key, size, num_points):
  """Sampling + hypercolumn read: [B, N, sum C]."""
  points = sample_points(key, maps[0].shape[0], size, num_points)
  return jax.vmap(lambda fms, p: hypercolumn.hypercolumn(fms, p, (size, size)))(maps, points)


def dense_hypercolumns(maps, size):
  """Every tap upsampled to the input size and concatenated: [B, S, S, sum C]."""
  up = [jax.image.resize(m, (m.shape[0], size, size, m.shape[-1]), "linear") for m in maps]
  return jnp.concatenate(up, axis=-1)


def dense_gather(maps, key, size, num_points):
  """Dense upsampling, then the sampled pixels gathered: [B, N, sum C]."""
  points = sample_points(key, maps[0].shape[0], size, num_points).astype(jnp.int32)
  dense = dense_hypercolumns(maps, size)
  return jax.vmap(lambda d, p: d[p[:, 0], p[:, 1]])(dense, points)


def dense_all(maps, key, size, num_points):
  """Dense upsampling, every pixel used: [B, S, S, sum C]."""
  del key, num_points
  return dense_hypercolumns(maps, size)


def scalar(features):
  """The loss stand-in: nonlinear, so the backward pass needs the features."""
  return 0.5 * jnp.mean(jnp.square(features))


def forward_fn(read, size, num_points):
  return lambda maps, key: scalar(read(maps, key, size, num_points))


def backward_fn(read, size, num_points):
  return jax.grad(forward_fn(read, size, num_points))


def time_call(fn, args, repeats: int):
  """Compiles ``fn``, warms it up and times it: a dict of seconds and memory."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(compiled(*args))  # Warm-up.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return dict(
    median_s=statistics.median(times),
    min_s=min(times),
    compile_s=compile_s,
    memory=memory_stats(compiled),
  )


def scaled(result, factor):
  out = dict(result)
  out["median_s"] = result["median_s"] * factor
  out["min_s"] = result["min_s"] * factor
  out["scaled_from_measured_by"] = factor
  return out


def rounded(tree):
  if isinstance(tree, dict):
    return {k: rounded(v) for k, v in tree.items()}
  if isinstance(tree, float):
    return float(f"{tree:.4g}")
  return tree


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=5, help="images per batch (sampled path)")
  parser.add_argument("--points", type=int, default=2000, help="sampled pixels per image")
  parser.add_argument("--size", type=int, default=224, help="input side S (multiple of 32)")
  parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")
  parser.add_argument(
    "--dense-images",
    type=int,
    default=1,
    help="images the dense paths run on (times scaled to --images)",
  )
  parser.add_argument(
    "--skip-dense-all",
    action="store_true",
    help="time only the dense path that gathers the sampled pixels",
  )
  parser.add_argument(
    "--quick", action="store_true", help="smoke run: 2 images x 256 points at 64, 2 repeats"
  )
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  if args.quick:
    args.images, args.points, args.size, args.repeats = 2, 256, 64, 2
    args.dense_images = min(args.dense_images, args.images)
  for name in ("images", "points", "repeats", "dense_images"):
    if getattr(args, name) < 1:
      parser.error(f"--{name.replace('_', '-')} must be >= 1")
  if args.dense_images > args.images:
    parser.error("--dense-images must be <= --images")

  load_at_start = os.getloadavg()[0]  # Other work on the machine inflates the times.
  shapes = tap_shapes(args.size)
  channels = sum(c for *_, c in shapes)
  key_maps, key_points = jax.random.split(jax.random.PRNGKey(args.seed))
  maps = make_maps(key_maps, args.images, shapes)
  dense_maps = [m[: args.dense_images] for m in maps]
  factor = args.images / args.dense_images

  results = {}
  results["sampling_only"] = time_call(
    lambda key: sample_points(key, args.images, args.size, args.points), (key_points,), args.repeats
  )
  paths = [("sampled", sampled_read, maps, 1.0), ("dense_gather", dense_gather, dense_maps, factor)]
  if not args.skip_dense_all:
    paths.append(("dense_all", dense_all, dense_maps, factor))
  for name, read, path_maps, scale in paths:
    for kind, build in (("forward", forward_fn), ("forward_backward", backward_fn)):
      measured = time_call(
        build(read, args.size, args.points), (path_maps, key_points), args.repeats
      )
      results[f"{name}_{kind}"] = scaled(measured, scale) if scale != 1.0 else measured

  # The sampled read equals the dense one gathered at the same integer pixels.
  check = jax.jit(
    lambda m, k: jnp.max(
      jnp.abs(
        sampled_read(m, k, args.size, args.points) - dense_gather(m, k, args.size, args.points)
      )
    )
  )
  max_abs_diff = float(check(dense_maps, key_points))

  ratios = {}
  for kind in ("forward", "forward_backward"):
    for dense_name in ("dense_gather", "dense_all"):
      if f"{dense_name}_{kind}" in results:
        ratios[f"{dense_name}_over_sampled_{kind}"] = (
          results[f"{dense_name}_{kind}"]["median_s"] / results[f"sampled_{kind}"]["median_s"]
        )

  num_points_total = args.images * args.points
  analytic_mb = dict(
    maps_per_batch=sum(args.images * h * w * c for _, h, w, c in shapes) * FLOAT_BYTES / 2**20,
    sampled_hypercolumns=num_points_total * channels * FLOAT_BYTES / 2**20,
    dense_hypercolumns=args.images * args.size**2 * channels * FLOAT_BYTES / 2**20,
  )
  load_at_end = os.getloadavg()[0]
  report = dict(
    benchmark="sampling_hypercolumn",
    platform=jax.devices()[0].platform,
    device=str(jax.devices()[0].device_kind),
    machine=platform.processor() or platform.machine(),
    cpu_count=os.cpu_count(),
    load_average_1m=dict(start=load_at_start, end=load_at_end),
    jax_version=jax.__version__,
    config=dict(
      images=args.images,
      points_per_image=args.points,
      size=args.size,
      repeats=args.repeats,
      dense_images_measured=args.dense_images,
      taps=[f"{n} {h}x{w}x{c}" for n, h, w, c in shapes],
      channels=channels,
      loss="0.5 * mean(h ** 2)",
    ),
    note=(
      f"dense_* times measured on {args.dense_images} image(s) and multiplied by "
      f"{factor:g} to cover {args.images}; their memory figures are for "
      f"{args.dense_images} image(s)."
      if factor != 1
      else "all paths measured at full batch."
    ),
    results=results,
    ratios=ratios,
    analytic_memory_mb=analytic_mb,
    sampled_minus_dense_gather_max_abs=max_abs_diff,
  )
  print(json.dumps(rounded(report), indent=1))


if __name__ == "__main__":
  main()
