"""Shared reading, decoding and checking of dataset files, and the TFDS plumbing of sources.

Every real dataset (camvid, voc2012, pascal_context, nyuv2_normals, ...) reads its files
through these helpers, so a bad file gives the same kind of message everywhere: the file,
what is wrong with it and what to do. Nothing is silently dropped, clipped or converted:
an image that does not decode, a label map whose size differs from its image, or a label
value that is neither a class nor the ignore value is an error.

Conventions of the examples the sources return:
  image   [H, W, 3] uint8 RGB
  label   [H, W] int32, classes 0..C-1, IGNORE_LABEL (255) = ignore
  id      str

A source may carry ``label_palette`` ([256, 3] uint8 or None): the colour map its label
files are stored under (VOC's for voc2012 and pascal_context, ``voc_palette``), so that
predicted class-id maps can be written the same way (``pixelnet-predict``).

TFDS part: `ArrayRecordBuilder` (base of the datasets' builders: array_record files,
images stored as their encoded bytes, readable without TensorFlow), `prepare_builder`
(build on first use from the manual directory) and `TfdsSource` (random access over the
prepared records, images decoded with PIL like the folder sources).
"""

from __future__ import annotations

import io
import os
import pathlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from pixelnet_jax import errors

IGNORE_LABEL = 255


# The project's error types, re-exported for the dataset modules.
DataError = errors.DataError
MissingDataError = errors.MissingDataError


def _where(name: os.PathLike | str | None) -> str:
  return f" {str(name)!r}" if name is not None else ""


# ---------------------------------------------------------------------------------- files


def require_dir(path: os.PathLike | str, what: str, instructions: str = "") -> pathlib.Path:
  """`path` as a Path if it is a folder, else MissingDataError with the download notes."""
  path = pathlib.Path(path).expanduser()
  if not path.is_dir():
    raise MissingDataError(
      f"{what}: folder {str(path)!r} does not exist."
      + (f"\n\n{instructions}" if instructions else "")
    )
  return path


def require_file(path: os.PathLike | str, what: str, instructions: str = "") -> pathlib.Path:
  """`path` as a Path if it is a file, else MissingDataError naming it."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise MissingDataError(
      f"{what}: file {str(path)!r} does not exist."
      + (f"\n\n{instructions}" if instructions else "")
    )
  return path


def read_bytes(path: os.PathLike | str, what: str = "data file") -> bytes:
  """The file's bytes; a missing file is a MissingDataError naming it."""
  return require_file(path, what).read_bytes()


def read_list(path: os.PathLike | str, what: str = "split list") -> list[str]:
  """Non-empty lines of a text list, stripped (the list file must exist)."""
  text = require_file(path, what).read_text()
  return [line.strip() for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------- decoding


def decode_image(data: bytes, name: os.PathLike | str | None = None) -> np.ndarray:
  """JPEG/PNG bytes -> image [H, W, 3] uint8 RGB with PIL (grey images become RGB).

  A corrupt or truncated file is a DataError naming `name`: PIL decodes lazily, so the
  pixels are loaded here, inside the check.
  """
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      return np.asarray(image.convert("RGB"), dtype=np.uint8)
  except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for bad/truncated files
    raise DataError(
      f"Cannot decode image{_where(name)} ({e}); the file is corrupt or "
      f"truncated: download or extract it again."
    ) from e


def read_image(path: os.PathLike | str) -> np.ndarray:
  """An image file -> [H, W, 3] uint8 RGB (see `decode_image`)."""
  return decode_image(read_bytes(path, "image"), path)


def decode_exact(
  data: bytes,
  modes: tuple[str, ...],
  name: os.PathLike | str | None = None,
  what: str = "label map",
) -> np.ndarray:
  """PNG bytes -> the stored values as uint8, refused unless PIL's mode is one of `modes`.

  For files whose values are data (class indices, encoded normals): no conversion.
  """
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      mode = image.mode
      if mode in modes:
        return np.asarray(image, dtype=np.uint8)
  except (OSError, SyntaxError, ValueError) as e:
    raise DataError(
      f"Cannot decode {what}{_where(name)} ({e}); the file is corrupt or "
      f"truncated: download or extract it again."
    ) from e
  raise DataError(
    f"The {what}{_where(name)} has PIL mode {mode!r}; expected "
    f"{' or '.join(repr(m) for m in modes)}."
  )


def decode_index_png(data: bytes, name: os.PathLike | str | None = None) -> np.ndarray:
  """A label PNG -> [H, W] uint8 class indices, never through colours.

  Palette ('P', e.g. VOC's SegmentationClass) and greyscale ('L', e.g. CamVid) files hold
  the indices themselves; an RGB colour-coded label map is refused (its colours would need
  a palette to invert).
  """
  return decode_exact(
    data,
    ("P", "L"),
    name,
    "label map (8-bit palette or greyscale PNG of class indices, not colours)",
  )


def read_index_png(path: os.PathLike | str) -> np.ndarray:
  """A label PNG file -> [H, W] uint8 class indices (see `decode_index_png`)."""
  return decode_index_png(read_bytes(path, "label map"), path)


def encode_png(image: np.ndarray) -> bytes:
  """[H, W, 3] or [H, W] uint8 -> PNG bytes (lossless, for arrays with no original file)."""
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
  return buffer.getvalue()


def voc_palette() -> np.ndarray:
  """The PASCAL VOC colour map, [256, 3] uint8 (VOCdevkit's ``labelcolormap``).

  The bits of index i are spread over R, G, B from the most significant bit down (bit
  3j of i -> bit 7 - j of R, 3j + 1 -> G, 3j + 2 -> B): 0 (0, 0, 0), 1 (128, 0, 0),
  15 (192, 128, 128), 255 = void (224, 224, 192). The palette of VOC's SegmentationClass
  PNGs.
  """
  index = np.arange(256)
  palette = np.zeros((256, 3), np.int64)
  for j in range(8):
    for channel in range(3):
      palette[:, channel] |= ((index >> (3 * j + channel)) & 1) << (7 - j)
  return palette.astype(np.uint8)


# ------------------------------------------------------------------------------- checking


def check_same_size(
  image: np.ndarray,
  label: np.ndarray,
  name: os.PathLike | str | None = None,
  what: str = "label map",
) -> None:
  """DataError unless label's [H, W] equals the image's (never resized to fit)."""
  if tuple(image.shape[:2]) != tuple(label.shape[:2]):
    raise DataError(
      f"The {what}{_where(name)} is {label.shape[1]}x{label.shape[0]} (WxH) "
      f"but its image is {image.shape[1]}x{image.shape[0]}: the files do not "
      f"belong together or one is damaged; restore the original files."
    )


def check_label_values(
  label: np.ndarray,
  num_classes: int,
  name: os.PathLike | str | None = None,
  ignore_label: int | None = IGNORE_LABEL,
) -> None:
  """DataError if a value is neither a class 0..num_classes-1 nor ignore_label."""
  values = np.unique(label)
  bad = values[(values < 0) | (values >= num_classes)]
  if ignore_label is not None:
    bad = bad[bad != ignore_label]
  if bad.size:
    allowed = f"0..{num_classes - 1}" + (f" or {ignore_label}" if ignore_label is not None else "")
    raise DataError(
      f"Label map{_where(name)} holds values {bad.tolist()[:10]} outside the "
      f"classes {allowed}: wrong file or a colour-converted label map; use the "
      f"dataset's original label files."
    )


def remap_labels(
  label: np.ndarray,
  table: Mapping[int, int] | np.ndarray,
  num_classes: int,
  name: os.PathLike | str | None = None,
) -> np.ndarray:
  """label [H, W] non-negative ints -> int32 through a lookup table; unmapped = DataError.

  `table` is a dict {raw value: output} or an int array indexed by raw value with -1 for
  raw values that must not occur. Outputs are classes 0..num_classes-1 or IGNORE_LABEL.
  """
  if isinstance(table, Mapping):
    lut = np.full(max(table) + 1, -1, np.int64)
    for raw, out in table.items():
      lut[raw] = out
  else:
    lut = np.asarray(table, np.int64)
  label = np.asarray(label)
  values = np.unique(label)
  in_range = (values >= 0) & (values < len(lut))
  bad = values[~in_range].tolist() + [int(v) for v in values[in_range] if lut[v] < 0]
  if bad:
    known = np.nonzero(lut >= 0)[0].tolist()
    expected = known if len(known) <= 20 else f"{known[0]}..{known[-1]}"
    raise DataError(
      f"Label map{_where(name)} holds raw values {sorted(bad)[:10]} that are "
      f"no known class (expected {expected}): wrong file or a colour-converted "
      f"label map; use the dataset's original label files."
    )
  out = lut[label].astype(np.int32)
  check_label_values(out, num_classes, name)
  return out


def segmentation_example(
  image: np.ndarray,
  label: np.ndarray,
  example_id: str | bytes,
  num_classes: int,
  name: os.PathLike | str | None = None,
) -> dict:
  """{image [H, W, 3] uint8, label [H, W] int32, id str} after the size and value checks."""
  if isinstance(example_id, bytes):
    example_id = example_id.decode("utf-8")
  label = np.asarray(label).astype(np.int32)
  check_same_size(image, label, name if name is not None else example_id)
  check_label_values(label, num_classes, name if name is not None else example_id)
  return {"image": image, "label": label, "id": example_id}


# ----------------------------------------------------------------------------------- TFDS


def segmentation_features(image_format: str, label_doc: str) -> dict:
  """The stored features of a segmentation dataset: encoded image, uint8 label, id."""
  return {
    "image": tfds.features.Image(shape=(None, None, 3), encoding_format=image_format),
    "label": tfds.features.Tensor(
      shape=(None, None), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB, doc=label_doc
    ),
    "id": tfds.features.Text(),
  }


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder):
  """Base of the datasets' TFDS builders: array_record files, metadata-free.

  Subclasses define `_info`, `_split_generators` and `_generate_examples` as usual.
  array_record gives random access (`builder.as_data_source`) without TensorFlow.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS finds checksums/metadata next to the builder's code through the top-level
    # package's resources, which fails for namespace packages; name the module file.
    return epath.Path(sys.modules[cls.__module__].__file__)

  def __init__(self, *, file_format: str | None = "array_record", **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  def make_info(
    self, description: str, features: Mapping[str, Any], homepage: str
  ) -> tfds.core.DatasetInfo:
    """DatasetInfo built directly (no metadata files), examples kept in key order.

    The builders key examples by their position in the split's list, so the stored order
    is the folder source's order (TFDS reads `disable_shuffling` from the info only).
    """
    return tfds.core.DatasetInfo(
      builder=self,
      description=description,
      features=tfds.features.FeaturesDict(features),
      homepage=homepage,
      disable_shuffling=True,
    )


def manual_dir_of(dl_manager: tfds.download.DownloadManager, instructions: str) -> pathlib.Path:
  """The download manager's manual dir; MissingDataError with instructions if absent."""
  try:
    return pathlib.Path(os.fspath(dl_manager.manual_dir))
  except AssertionError as e:  # TFDS's "does not exist or is empty"
    raise MissingDataError(f"{str(e).split(' Create it')[0]}\n\n{instructions}") from e


def prepare_builder(
  builder_cls: type[tfds.core.DatasetBuilder],
  data_dir: os.PathLike | str | None,
  manual_dir: os.PathLike | str | None,
  instructions: str,
) -> tfds.core.DatasetBuilder:
  """The builder, prepared from manual_dir on first use (later calls read what is built).

  manual_dir defaults to `<data_dir>/downloads/manual`. A dataset already prepared in
  data_dir is not rebuilt when manual_dir changes: delete `<data_dir>/<name>` to rebuild.
  """
  builder = builder_cls(data_dir=os.fspath(data_dir) if data_dir else None)
  if not builder.is_prepared():
    manual = (
      pathlib.Path(os.fspath(manual_dir))
      if manual_dir
      else (pathlib.Path(os.fspath(builder.data_dir_root)) / "downloads" / "manual")
    )
    if not manual.is_dir():
      raise MissingDataError(
        f"The TFDS dataset {builder.name!r} is not prepared in {builder.data_dir!r} and "
        f"the manual directory {str(manual)!r} does not exist.\n\n{instructions}"
      )
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual))
    )
  return builder


class TfdsSource:
  """Random access over a prepared TFDS split; `to_example(record)` makes the example.

  Image features are not decoded by TFDS (`SkipDecoding`): `to_example` decodes their
  bytes with PIL, the decoder of the folder sources, so both give identical examples.
  """

  def __init__(
    self,
    builder: tfds.core.DatasetBuilder,
    split: str,
    to_example: Callable[[Mapping[str, Any]], dict],
    image_keys: Iterable[str] = ("image",),
    label_palette: np.ndarray | None = None,
  ):
    if split not in builder.info.splits:
      raise MissingDataError(
        f"Split {split!r} of {builder.name!r} was not in the manual directory when the "
        f"dataset was built in {builder.data_dir!r} (splits: {sorted(builder.info.splits)})"
        f"; add its files and delete that folder to rebuild."
      )
    self.name = builder.name
    self.split = split
    self.label_palette = label_palette
    self._to_example = to_example
    self._records = builder.as_data_source(
      split, decoders={k: tfds.decode.SkipDecoding() for k in image_keys}
    )

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict:
    return self._to_example(self._records[index])

  def __repr__(self) -> str:
    return f"TfdsSource({self.name!r}, split={self.split!r}, len={len(self)})"


class ListSource:
  """Random access over a list of file records; `load(record)` reads one example."""

  def __init__(
    self,
    name: str,
    split: str,
    records: list,
    load: Callable[[Any], dict],
    label_palette: np.ndarray | None = None,
  ):
    if not records:
      raise MissingDataError(f"{name} split {split!r} is empty: its list names no files.")
    self.name = name
    self.split = split
    self.label_palette = label_palette
    self.records = records
    self._load = load

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, index: int) -> dict:
    return self._load(self.records[index])

  def __repr__(self) -> str:
    return f"ListSource({self.name!r}, split={self.split!r}, len={len(self)})"


def check_backend(name: str, config: Any, instructions: str) -> tuple[str, str | None]:
  """(backend, manual_dir) of a dataset entry's config; errors name the config fields."""
  backend = config.get("backend") or "tfds"
  manual_dir = config.get("manual_dir")
  if backend not in ("tfds", "folder"):
    raise ValueError(
      f'config.dataset.backend for {name} must be "tfds" or "folder", got {backend!r}.'
    )
  if backend == "folder" and not manual_dir:
    raise MissingDataError(
      f'config.dataset.backend="folder" needs config.dataset.manual_dir '
      f"for {name}.\n\n{instructions}"
    )
  return backend, manual_dir
