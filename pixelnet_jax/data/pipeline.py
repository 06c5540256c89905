"""Input pipeline: augmentation, normalisation and batching of example dicts (grain).

Examples come from a random-access source (`len(source)`, `source[i]` -> dict, see
`pixelnet_jax.data.registry`): `image [H, W, 3] uint8` plus per-pixel label keys.

The pipeline knows no task: which keys to keep, what padded pixels hold and how a value
changes under a mirror come from the caller (the task) as `label_keys` and `label_specs`
(`LabelSpec`). Batches are numpy dicts:
  image          [B, h, w, 3] float32, normalised by `normalize_image`; 0 where padded.
  valid          [B, h, w] bool: True on real image pixels, False on padding (a crop
                 larger than the image, or eval images padded to the batch's largest).
                 Every task should AND it into its sampling mask.
  <label key>    [B, h, w, ...] as the source gives it, `LabelSpec.pad_value` where padded
                 (0 / False by default), e.g. `label` [B, h, w] int32 with the task's
                 ignore label there.
Eval batches also carry `image_size [B, 2] int32` (each image's own (H, W)) and, as
Python lists of length B, every non-spatial key of the examples (`id`, `boundaries`,
...).

Training determinism: the batch at step k is a pure function of (source, seed, k):
  epoch e = a seeded permutation of the source (seed folded with e, grain's `shuffle`);
  element i's augmentation draws from a generator seeded by (seed, i) (grain's
  `random_map`). `make_train_iterator(..., start_step=k)` therefore resumes exactly at
  step k with no iterator state to checkpoint (grain's get_state/set_state also work).
  In a multi-process run the batch is global: process p of P reads only its slice
  (images p*B/P to (p+1)*B/P) of each, the same images whatever P.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import grain
import numpy as np
from absl import flags

# ImageNet statistics of RGB in [0, 1] (torchvision's), the usual choice for VGG trunks.
IMAGE_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGE_STD = np.array([0.229, 0.224, 0.225], np.float32)

VALID_KEY = "valid"
# Per-channel colour gain of the original solver.
DEFAULT_GAIN_RANGE = (0.8, 1.3)


@dataclasses.dataclass(frozen=True)
class LabelSpec:
  """How the pipeline treats one per-pixel key; declared by whoever owns the label.

  Attributes:
    pad_value: what pixels outside the image hold (e.g. a task's ignore label).
    hflip: applied to the values after a left-right mirror of the map (e.g. negate
      the image-right component of surface normals); None: values unchanged.
    rot90: ``rot90(values, k)`` applied to the values after the map is turned by k
      quarter turns (``np.rot90``: the image-right side moves to the top), e.g. turning
      the x/y components of surface normals; None: values unchanged.
    resize: how scale augmentation resamples the map: 'nearest' (keeps the value set:
      class ids, ignore, unit normals) or 'max' (each pixel of a shrunk map takes the
      max of the source pixels it covers, so 1-pixel structures such as boundaries stay
      connected instead of losing the rows and columns nearest skips).
  """

  pad_value: Any = 0
  hflip: Callable[[np.ndarray], np.ndarray] | None = None
  rot90: Callable[[np.ndarray, int], np.ndarray] | None = None
  resize: str = "nearest"

  def __post_init__(self):
    if self.resize not in ("nearest", "max"):
      raise ValueError(f"LabelSpec.resize must be 'nearest' or 'max', got {self.resize!r}.")


LabelSpecs = Mapping[str, LabelSpec]
_IMAGE_SPECS = {"image": LabelSpec(0), VALID_KEY: LabelSpec(False)}


def _spec(key: str, specs: LabelSpecs | None) -> LabelSpec:
  return (specs or {}).get(key) or _IMAGE_SPECS.get(key) or LabelSpec()


def normalize_image(image: Any) -> np.ndarray:
  """image [..., 3] uint8 (or float in 0..255) -> float32 (rgb/255 - IMAGE_MEAN) / IMAGE_STD."""
  image = np.asarray(image, np.float32)
  if image.shape[-1:] != (3,):
    raise ValueError(f"image must end in 3 RGB channels, got shape {image.shape}.")
  return (image / 255.0 - IMAGE_MEAN) / IMAGE_STD


def as_pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
  pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
  if len(pair) != 2 or any(int(s) != s or s < 1 for s in pair):
    raise ValueError(f"{name} must be a positive int or an (h, w) pair, got {size!r}.")
  return int(pair[0]), int(pair[1])


def is_spatial(value: Any, image_shape: Sequence[int]) -> bool:
  """Whether `value` is a per-pixel map of an image of `image_shape`: [H, W, ...]."""
  return (
    isinstance(value, np.ndarray) and value.ndim >= 2 and value.shape[:2] == tuple(image_shape[:2])
  )


def select_keys(example: Mapping[str, Any], label_keys: Sequence[str] | None) -> dict:
  """image + the label keys (default: every [H, W, ...] array) + `valid` (all True).

  Every returned array is spatial: [H, W, ...] with the image's H, W.
  """
  if "image" not in example:
    raise ValueError(f'example has no "image" key (keys: {sorted(example)}).')
  image = np.asarray(example["image"])
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'example["image"] must be [H, W, 3], got shape {image.shape}.')
  if label_keys is None:
    keys = [
      k for k, v in example.items() if k not in ("image", VALID_KEY) and is_spatial(v, image.shape)
    ]
  else:
    keys = list(label_keys)
  out = {"image": image}
  for key in keys:
    if key not in example:
      raise KeyError(f"label key {key!r} is not in the example (keys: {sorted(example)}).")
    value = np.asarray(example[key])
    if value.shape[:2] != image.shape[:2]:
      raise ValueError(
        f"example[{key!r}] has shape {value.shape}; its first two dims must "
        f"match the image {image.shape[:2]}."
      )
    out[key] = value
  out[VALID_KEY] = np.ones(image.shape[:2], bool)
  return out


def _place(
  array: np.ndarray,
  out_size: tuple[int, int],
  src_start: tuple[int, int],
  dst_start: tuple[int, int],
  fill: Any,
) -> np.ndarray:
  """Copies array[src_start:] into a `fill`-ed [out_h, out_w, ...] canvas at dst_start."""
  out = np.full(out_size + array.shape[2:], fill, array.dtype)
  h = min(array.shape[0] - src_start[0], out_size[0] - dst_start[0])
  w = min(array.shape[1] - src_start[1], out_size[1] - dst_start[1])
  out[dst_start[0] : dst_start[0] + h, dst_start[1] : dst_start[1] + w] = array[
    src_start[0] : src_start[0] + h, src_start[1] : src_start[1] + w
  ]
  return out


def random_crop(
  example: Mapping[str, np.ndarray],
  crop_size: tuple[int, int],
  rng: np.random.Generator,
  label_specs: LabelSpecs | None = None,
) -> dict:
  """Crops every spatial key at one random window of crop_size = (h, w).

  Along an axis shorter than the crop, the whole image is placed at a random offset in
  the window and the rest padded with each key's `LabelSpec.pad_value` (`valid` False).
  """
  size = example["image"].shape[:2]
  src, dst = [0, 0], [0, 0]
  for axis in range(2):
    slack = size[axis] - crop_size[axis]
    offset = int(rng.integers(0, abs(slack) + 1))
    if slack >= 0:
      src[axis] = offset
    else:
      dst[axis] = offset
  return {
    k: _place(v, crop_size, tuple(src), tuple(dst), _spec(k, label_specs).pad_value)
    for k, v in example.items()
  }


def horizontal_flip(
  example: Mapping[str, np.ndarray], label_specs: LabelSpecs | None = None
) -> dict:
  """Mirrors every spatial key left-right, then applies each key's `LabelSpec.hflip`."""
  out = {}
  for key, value in example.items():
    hflip = _spec(key, label_specs).hflip
    value = value[:, ::-1]
    out[key] = hflip(value) if hflip is not None else value
  return out


def rotate90(
  example: Mapping[str, np.ndarray], k: int, label_specs: LabelSpecs | None = None
) -> dict:
  """Turns every spatial key by k quarter turns (``np.rot90`` over the image axes, so
  [H, W, ...] becomes [W, H, ...] for odd k), then applies each key's `LabelSpec.rot90`."""
  k = int(k) % 4
  if k == 0:
    return dict(example)
  out = {}
  for key, value in example.items():
    turn = _spec(key, label_specs).rot90
    value = np.rot90(value, k, axes=(0, 1))
    out[key] = turn(value, k) if turn is not None else value
  return out


def _resize_axis(size: int, out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Half-pixel bilinear taps along one axis: (i0, i1, weight of i1)."""
  pos = np.clip((np.arange(out) + 0.5) * (size / out) - 0.5, 0, size - 1)
  i0 = np.floor(pos).astype(np.int64)
  return i0, np.minimum(i0 + 1, size - 1), (pos - i0).astype(np.float32)


RESIZE_METHODS = ("nearest", "linear", "max")


def _nearest_axis(size: int, out: int) -> np.ndarray:
  return np.minimum((np.arange(out) + 0.5) * (size / out), size - 1).astype(np.int64)


def _max_axis(array: np.ndarray, out: int, axis: int) -> np.ndarray:
  """Shrinking: the max over each output pixel's span [i*size/out, (i+1)*size/out) of
  source pixels (the spans tile the axis); growing or equal: nearest."""
  size = array.shape[axis]
  if out >= size:
    return np.take(array, _nearest_axis(size, out), axis=axis)
  starts = (np.arange(out) * size) // out
  return np.maximum.reduceat(array, starts, axis=axis)


def resize(array: np.ndarray, out_size: tuple[int, int], method: str = "nearest") -> np.ndarray:
  """[H, W, ...] -> [h, w, ...]: 'nearest' (any dtype, values kept), 'linear' (bilinear,
  half-pixel centres; integer dtypes rounded back) or 'max' (see `LabelSpec.resize`:
  thin structures survive shrinking). Same size: returned unchanged."""
  (h, w), size = out_size, array.shape[:2]
  if (h, w) == tuple(size):
    return array
  if method == "nearest":
    return array[_nearest_axis(size[0], h)][:, _nearest_axis(size[1], w)]
  if method == "max":
    return _max_axis(_max_axis(array, h, 0), w, 1)
  if method != "linear":
    raise ValueError(f"resize method must be one of {RESIZE_METHODS}, got {method!r}.")
  (r0, r1, wr), (c0, c1, wc) = _resize_axis(size[0], h), _resize_axis(size[1], w)
  a = array.astype(np.float32)
  wr = wr.reshape((h, 1) + (1,) * (a.ndim - 2))
  wc = wc.reshape((1, w) + (1,) * (a.ndim - 2))
  top = a[r0][:, c0] * (1 - wc) + a[r0][:, c1] * wc
  bottom = a[r1][:, c0] * (1 - wc) + a[r1][:, c1] * wc
  out = top * (1 - wr) + bottom * wr
  if np.issubdtype(array.dtype, np.integer):
    info = np.iinfo(array.dtype)
    return np.clip(np.round(out), info.min, info.max).astype(array.dtype)
  return out.astype(array.dtype)


def rescale(
  example: Mapping[str, np.ndarray], scale: float, label_specs: LabelSpecs | None = None
) -> dict:
  """Resizes every spatial key by `scale` (sizes rounded, at least 1 pixel).

  The image is interpolated bilinearly; label maps and `valid` are resampled as their
  `LabelSpec.resize` says (default nearest, which keeps their value set: class ids,
  ignore, unit normals, booleans).
  """
  h, w = example["image"].shape[:2]
  out_size = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))
  return {
    k: resize(v, out_size, "linear" if k == "image" else _spec(k, label_specs).resize)
    for k, v in example.items()
  }


def color_gain(image: np.ndarray, gains: np.ndarray) -> np.ndarray:
  """image [H, W, 3] (0..255) * gains [3] -> float32, clipped to 0..255 as a sensor saturates."""
  return np.clip(image.astype(np.float32) * gains.astype(np.float32), 0.0, 255.0)


def augment(
  example: Mapping[str, Any],
  rng: np.random.Generator,
  *,
  crop_size: tuple[int, int],
  flip: bool = True,
  gain_range: tuple[float, float] | None = DEFAULT_GAIN_RANGE,
  label_keys: Sequence[str] | None = None,
  label_specs: LabelSpecs | None = None,
  scale_range: tuple[float, float] | None = None,
  rotate: bool = False,
) -> dict:
  """Random scale U[scale_range] (if given), quarter turns k ~ U{0..3} (if rotate), crop,
  horizontal flip (50%), per-channel gain U[gain_range] on the image only.

  Turns and the flip together draw all 8 symmetries of the square, for data with no
  preferred orientation (e.g. BSDS500's portrait and landscape photographs); the turn
  comes before the crop, so non-square crops keep their shape.
  Returns the spatial keys at crop_size with `image [h, w, 3] float32` still in 0..255
  (`finalize` normalises it). Draws from rng in a fixed order, so it is deterministic;
  scale_range None and rotate False draw nothing for them (the same stream as before
  they existed).
  """
  out = select_keys(example, label_keys)
  if scale_range is not None:
    out = rescale(out, float(rng.uniform(*check_scale_range(scale_range))), label_specs)
  if rotate:
    out = rotate90(out, int(rng.integers(0, 4)), label_specs)
  out = random_crop(out, crop_size, rng, label_specs)
  do_flip = bool(rng.random() < 0.5)
  gains = (
    rng.uniform(gain_range[0], gain_range[1], size=3) if gain_range is not None else np.ones(3)
  )
  if flip and do_flip:
    out = horizontal_flip(out, label_specs)
  out["image"] = color_gain(out["image"], gains)
  return out


def check_scale_range(
  scale_range: tuple[float, float], name: str = "scale_range"
) -> tuple[float, float]:
  """``scale_range`` as two floats; ValueError (naming it ``name``) unless 0 < low <= high."""
  low, high = (float(v) for v in scale_range)
  if not 0 < low <= high:
    raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {scale_range!r}.")
  return low, high


def finalize(example: Mapping[str, Any]) -> dict:
  """Normalises `image` and zeroes it where `valid` is False; other keys unchanged."""
  out = dict(example)
  image = normalize_image(out["image"])
  out["image"] = np.where(np.asarray(out[VALID_KEY])[..., None], image, np.float32(0))
  return out


def _check_source(source: Any) -> int:
  try:
    n = len(source)
  except TypeError as e:
    raise TypeError(
      f"source must be random access (len(source), source[i]); got {type(source).__name__}."
    ) from e
  if n == 0:
    raise ValueError(f"source {source!r} is empty.")
  return n


def _check_seed(seed: int) -> int:
  if not 0 <= int(seed) < 2**32:
    raise ValueError(f"seed must be in [0, 2**32), got {seed}.")
  return int(seed)


def train_dataset(
  source: Any,
  batch_size: int,
  crop_size: int | Sequence[int],
  seed: int,
  *,
  flip: bool = True,
  gain_range: tuple[float, float] | None = DEFAULT_GAIN_RANGE,
  label_keys: Sequence[str] | None = None,
  label_specs: LabelSpecs | None = None,
  scale_range: tuple[float, float] | None = None,
  rotate: bool = False,
  validate: Callable[[dict], None] | None = None,
  process_index: int = 0,
  process_count: int = 1,
) -> grain.MapDataset:
  """The infinite training stream as a grain MapDataset: element k is the batch of step k.

  Shuffled per epoch, augmented, normalised, batched: {image [B, h, w, 3] float32,
  valid [B, h, w] bool, label keys [B, h, w, ...]}. ``validate(batch)``, when given, runs
  on each batch in the data workers (e.g. the task's label checks) and raises on a bad
  one; it must be picklable for worker processes (a module-level function or partial).
  With ``process_count`` P > 1, element k is only images ``process_index`` * B/P to
  (``process_index`` + 1) * B/P of the global batch of step k (B is global).
  """
  _check_source(source)
  if int(batch_size) < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  if int(process_count) < 1 or not 0 <= int(process_index) < int(process_count):
    raise ValueError(
      f"process_index must be in [0, process_count), got {process_index} of {process_count}."
    )
  if int(batch_size) % int(process_count):
    raise ValueError(
      f"batch_size={batch_size} (global) must be a multiple of the {process_count} processes."
    )
  aug = functools.partial(
    augment,
    crop_size=as_pair(crop_size, "crop_size"),
    flip=flip,
    gain_range=gain_range,
    label_keys=label_keys,
    label_specs=label_specs,
    scale_range=scale_range,
    rotate=bool(rotate),
  )
  if scale_range is not None:
    check_scale_range(scale_range)
  ds = grain.MapDataset.source(source).seed(_check_seed(seed))
  ds = ds.shuffle().repeat(None)  # shuffle before repeat: a fresh permutation per epoch
  ds = ds.random_map(aug).map(finalize)
  # Batches of B/P consecutive images: global batch k is local batches k*P .. k*P + P - 1,
  # of which this process takes one. One process: the batches of B as ever.
  ds = ds.batch(int(batch_size) // int(process_count), drop_remainder=True)
  if int(process_count) > 1:
    ds = ds[int(process_index) :: int(process_count)]
  if validate is not None:
    ds = ds.map(functools.partial(_validated, validate=validate))
  return ds


def _validated(batch: dict, validate: Callable[[dict], None]) -> dict:
  validate(batch)
  return batch


def _iterate(
  ds: grain.MapDataset, num_workers: int, num_threads: int, prefetch: int
) -> grain.DatasetIterator:
  it_ds = ds.to_iter_dataset(
    grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
  )
  if num_workers > 0:
    # grain's workers read absl flags; outside an absl app (tests, notebooks) they are
    # unparsed, so take their defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(it_ds)


def make_train_iterator(
  source: Any,
  batch_size: int,
  crop_size: int | Sequence[int],
  seed: int,
  *,
  start_step: int = 0,
  num_workers: int = 0,
  num_threads: int = 2,
  prefetch: int = 4,
  flip: bool = True,
  gain_range: tuple[float, float] | None = DEFAULT_GAIN_RANGE,
  label_keys: Sequence[str] | None = None,
  label_specs: LabelSpecs | None = None,
  scale_range: tuple[float, float] | None = None,
  rotate: bool = False,
  validate: Callable[[dict], None] | None = None,
  process_index: int = 0,
  process_count: int = 1,
) -> grain.DatasetIterator:
  """An infinite iterator of training batches (see `train_dataset`), starting at start_step.

  Args:
    source: random-access examples.
    batch_size: images per batch B, global (over all processes).
    crop_size: (h, w) or an int; images smaller than it are padded (`valid` False).
    seed: in [0, 2**32); with start_step it fixes every batch.
    start_step: the step of the first batch yielded (resume = pass the restored step).
    num_workers: grain worker processes (0: threads in this process).
    num_threads: grain reader threads; prefetch: batches buffered ahead.
    flip, gain_range: augmentation switches (gain_range None: no colour gain).
    label_keys: keys to keep besides image (default: every [H, W, ...] array).
    label_specs: {key: LabelSpec}, pad values and mirror transforms (from the task).
    scale_range: (low, high) random rescale of each example before the crop (image
      bilinear, label maps as their `LabelSpec.resize`); None (default): no rescaling.
    rotate: random quarter turns of each example before the crop (see `augment`).
    validate: called on each batch in the data workers; its exception (e.g. a
      ValueError from the task's label checks) comes out of ``next()``.
    process_index, process_count: this process's share of each global batch (its
      B / process_count images, in order); the defaults read the whole batch.

  Returns:
    A grain DatasetIterator (also supports get_state()/set_state()).
  """
  if int(start_step) < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}.")
  ds = train_dataset(
    source,
    batch_size,
    crop_size,
    seed,
    flip=flip,
    gain_range=gain_range,
    label_keys=label_keys,
    label_specs=label_specs,
    scale_range=scale_range,
    rotate=rotate,
    validate=validate,
    process_index=process_index,
    process_count=process_count,
  )
  return _iterate(ds[int(start_step) :], num_workers, num_threads, prefetch)


def pad_batch(
  examples: Sequence[Mapping[str, Any]],
  label_keys: Sequence[str] | None = None,
  label_specs: LabelSpecs | None = None,
) -> dict:
  """Stacks examples of different sizes, padding each to the batch's largest (H, W).

  Images sit at the top-left; padding follows `label_specs` (`valid` False). Returns the
  spatial keys stacked, `image_size [B, 2] int32`, and every other key as a list.
  """
  spatial = [select_keys(ex, label_keys) for ex in examples]
  sizes = np.array([s["image"].shape[:2] for s in spatial], np.int32)
  out_size = tuple(int(v) for v in sizes.max(axis=0))
  batch = {
    k: np.stack(
      [_place(s[k], out_size, (0, 0), (0, 0), _spec(k, label_specs).pad_value) for s in spatial]
    )
    for k in spatial[0]
  }
  batch["image_size"] = sizes
  for key in examples[0]:
    if key not in batch:
      batch[key] = [ex[key] for ex in examples]
  return batch


def make_eval_batches(
  source: Any,
  batch_size: int = 1,
  *,
  label_keys: Sequence[str] | None = None,
  label_specs: LabelSpecs | None = None,
  num_workers: int = 0,
  num_threads: int = 2,
  prefetch: int = 2,
  num_batches: int | None = None,
  shard_index: int = 0,
  shard_count: int = 1,
) -> Iterator[dict]:
  """One pass over source in order, unaugmented, in batches of up to batch_size.

  Images keep their size; a batch is padded to its largest image (see `pad_batch`), so
  batch_size=1 never pads. The last batch may be smaller. ``num_batches``: only the first
  ones; ``shard_index`` of ``shard_count``: only batches shard_index, shard_index +
  shard_count, ... of those (a process's share; the others are never read).
  """
  _check_source(source)
  if int(batch_size) < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  if int(shard_count) < 1 or not 0 <= int(shard_index) < int(shard_count):
    raise ValueError(f"shard_index must be in [0, shard_count), got {shard_index}, {shard_count}.")
  ds = grain.MapDataset.source(source).batch(
    int(batch_size),
    drop_remainder=False,
    batch_fn=functools.partial(pad_batch, label_keys=label_keys, label_specs=label_specs),
  )
  if num_batches is not None:
    ds = ds[: int(num_batches)]
  if int(shard_count) > 1:
    ds = ds[int(shard_index) :: int(shard_count)]
  return _iterate(ds.map(finalize), num_workers, num_threads, prefetch)
