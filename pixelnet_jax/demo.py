"""A tour of the sampling + hypercolumn API on random data (``pixelnet-demo``).

Samples 2,000 pixels of a random label map with class-stratified quotas, reads
their hypercolumns from three feature maps of different strides, and checks the
read against dense bilinear upsampling. Runs in seconds on a CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np

from pixelnet_jax import hypercolumn, sampling


def main():
  size, num_points, num_classes = 224, 2000, 4
  k_labels, k_ignore, k_sample, k_maps = jax.random.split(jax.random.PRNGKey(0), 4)
  # labels [H, W] int32: blocky classes 0..3, a fifth of the pixels 255 (ignored).
  blocks = jax.random.randint(k_labels, (size // 32, size // 32), 0, num_classes)
  labels = jnp.repeat(jnp.repeat(blocks, 32, axis=0), 32, axis=1)
  labels = jnp.where(jax.random.uniform(k_ignore, labels.shape) < 0.2, 255, labels)

  strata = sampling.class_strata(labels, ignore_label=255)
  sample = jax.jit(sampling.stratified, static_argnums=(2, 3))(
    k_sample, strata, num_points, num_classes
  )
  print(
    f"labels {labels.shape} -> coords {sample.coords.shape} {sample.coords.dtype}, "
    f"mask {sample.mask.shape} (all valid: {bool(sample.mask.all())})"
  )
  picked = np.asarray(labels[sample.coords[:, 0], sample.coords[:, 1]])
  area = np.asarray(labels)
  print("pixels per class:", {c: int((area == c).sum()) for c in range(num_classes)})
  print(
    "points per class:",
    {c: int((picked == c).sum()) for c in range(num_classes)},
    "| ignored pixels drawn:",
    int((picked == 255).sum()),
  )

  # Three feature maps [h, w, C] of strides 1, 4 and 16.
  shapes = [(224, 224, 8), (56, 56, 16), (14, 14, 32)]
  maps = [jax.random.normal(k, s) for k, s in zip(jax.random.split(k_maps, 3), shapes)]
  points = sampling.sample_points(sample)
  columns = jax.jit(hypercolumn.hypercolumn, static_argnums=2)(maps, points, (size, size))
  print("maps", [m.shape for m in maps], "-> hypercolumns", columns.shape)

  # At integer pixels the read equals dense bilinear upsampling of each map.
  dense = jnp.concatenate(
    [jax.image.resize(m, (size, size, m.shape[-1]), "linear") for m in maps], axis=-1
  )
  diff = float(jnp.max(jnp.abs(columns - dense[sample.coords[:, 0], sample.coords[:, 1]])))
  print(f"max |hypercolumn - jax.image.resize| at the sampled pixels: {diff:.2e}")
  if diff > 1e-4:
    raise SystemExit("hypercolumn read disagrees with jax.image.resize")


if __name__ == "__main__":
  main()
