"""NYU Depth v2 surface normals (795 train / 654 test frames): TFDS builder and sources.

Two common pre-processed layouts are read; the one present in the manual directory is
detected from its folders:

  MTAN (Liu et al. 2019, `lorenmt/mtan`; 288x384):
    <manual_dir>/{train,val}/image/<N>.npy    float64 [H, W, 3] RGB in [0, 1]
    <manual_dir>/{train,val}/normal/<N>.npy   float64 [H, W, 3] unit; (0, 0, 0) = invalid
    (depth/, label/ are not read). Files 0..count-1, count = number of image/*.npy (as
    MTAN's loader). MTAN's `val/` is NYUv2's official 654-image test split, so it is this
    source's split `test`.
  PNG (GeoNet normals in `baegwangbin/surface_normal_uncertainty`'s layout; 640x480):
    <manual_dir>/{train,test}/img/<name>.png    RGB
    <manual_dir>/{train,test}/norm/<name>.png   n = value / 127.5 - 1; (0, 0, 0) = invalid
    Pairs by file name, sorted.

Examples: image [H, W, 3] uint8, normals [H, W, 3] float32 unit vectors in the project's
camera convention (x = image right, y = image down, z = towards the camera; 0 where
invalid), normals_valid [H, W] bool, id str ("<split>/<name>").

Normals conventions and what the conversion does:
  MTAN's normals are (x, y, z) with x towards image right, y horizontal away from the
  camera into the scene, z up (measured on the shared sample: the floor is (0, 0, 1) in
  every frame whatever the camera tilt, so the frame is gravity-aligned, not the
  camera's). They are mapped as (x, y, z) -> (x, -z, -y): right stays right, up becomes
  -down, into-the-scene becomes -towards-the-camera. This is a fixed rotation, exact only
  for a level camera (no pitch or roll); NYUv2's hand-held Kinect is typically tilted by a
  few to ~15 degrees, and the converted normals keep that error (a floor is always (0, -1,
  0), even in a picture looking down at it). The gravity direction of each frame is not in
  MTAN's files, so this cannot be undone here. Comparing with numbers reported in camera
  coordinates is therefore approximate; x = image right holds exactly, so a horizontal
  flip negating x (the normals task's `mirror_normals`) is consistent.
  The PNG layout stores camera-frame normals; they are taken as (x right, y down, z
  towards the camera), the convention of that code base (no sample was available to
  measure it). Decoded vectors are renormalised to unit length.
A vector whose length is far from 1 (not 0) or a non-finite value is an error.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from ml_collections import config_dict

from pixelnet_jax.data import readers
from pixelnet_jax.data.registry import DATASETS

SPLITS = ("train", "test")
LAYOUTS = ("mtan", "png")
# Split -> folder of each layout.
_FOLDERS = {"mtan": {"train": "train", "test": "val"}, "png": {"train": "train", "test": "test"}}
# MTAN (x right, y into the scene, z up) -> camera (x right, y down, z towards the camera).
MTAN_TO_CAMERA = np.array([[1, 0, 0], [0, 0, -1], [0, -1, 0]], np.float32)
# Valid normals must have length 1 within this (PNG quantisation is < 0.01).
_LENGTH_TOLERANCE = 0.05
_HOMEPAGE = "https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html"

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
NYUv2 surface normals must be put in place by hand (research use; cite NYU Depth v2 and
the pre-processing's authors). Either layout works:
  MTAN's pre-processed NYUv2 (`lorenmt/mtan` README, Dropbox link; extract `nyuv2/`):
    <manual_dir>/train/{image,normal}/0.npy ... 794.npy
    <manual_dir>/val/{image,normal}/0.npy ... 653.npy       (NYUv2's test split)
  or GeoNet normals as PNGs (`baegwangbin/surface_normal_uncertainty` README, NYUv2 link):
    <manual_dir>/train/{img,norm}/*.png
    <manual_dir>/test/{img,norm}/*.png
Pass the folder holding train/ as config.dataset.manual_dir (default for the TFDS backend:
<data_dir>/downloads/manual/).
"""


class Record(NamedTuple):
  id: str
  image_path: pathlib.Path
  normal_path: pathlib.Path


def detect_layout(manual_dir: os.PathLike | str) -> str:
  """'mtan' or 'png', from the folders under manual_dir."""
  path = readers.require_dir(manual_dir, "NYUv2 manual directory", MANUAL_DOWNLOAD_INSTRUCTIONS)
  if any((path / d / "image").is_dir() for d in ("train", "val")):
    return "mtan"
  if any((path / d / "img").is_dir() for d in ("train", "test")):
    return "png"
  raise readers.MissingDataError(
    f"No NYUv2 normals under {str(path)!r}: expected train/image/ and val/image/ (MTAN) "
    f"or train/img/ and test/img/ (PNG).\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
  )


def list_split(manual_dir: os.PathLike | str, split: str) -> list[Record]:
  """The split's (id, image, normal) files; MTAN in index order, PNG sorted by name."""
  if split not in SPLITS:
    raise ValueError(
      f"NYUv2 split must be one of {SPLITS}, got {split!r} (MTAN's val/ is the test split)."
    )
  layout = detect_layout(manual_dir)
  folder = pathlib.Path(manual_dir) / _FOLDERS[layout][split]
  if layout == "mtan":
    image_dir = readers.require_dir(
      folder / "image", f"NYUv2 {split} images (MTAN)", MANUAL_DOWNLOAD_INSTRUCTIONS
    )
    count = len(list(image_dir.glob("*.npy")))
    names = [str(i) for i in range(count)]
    records = [
      Record(f"{split}/{n}", image_dir / f"{n}.npy", folder / "normal" / f"{n}.npy") for n in names
    ]
  else:
    image_dir = readers.require_dir(
      folder / "img", f"NYUv2 {split} images (PNG)", MANUAL_DOWNLOAD_INSTRUCTIONS
    )
    records = [
      Record(f"{split}/{p.stem}", p, folder / "norm" / p.name)
      for p in sorted(image_dir.glob("*.png"))
    ]
  for record in records:
    readers.require_file(record.image_path, f"NYUv2 {split} image", MANUAL_DOWNLOAD_INSTRUCTIONS)
    readers.require_file(
      record.normal_path,
      f"NYUv2 {split} normals of {record.image_path}",
      MANUAL_DOWNLOAD_INSTRUCTIONS,
    )
  return records


def _load_npy(path: pathlib.Path, shape_end: tuple[int, ...], what: str) -> np.ndarray:
  try:
    array = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise readers.DataError(
      f"Cannot read {what} {str(path)!r} ({e}); the file is corrupt or truncated: extract it again."
    ) from e
  if array.ndim != 3 or array.shape[2:] != shape_end:
    raise readers.DataError(f"{what} {str(path)!r} has shape {array.shape}, expected [H, W, 3].")
  if not np.isfinite(array).all():
    raise readers.DataError(f"{what} {str(path)!r} holds non-finite values.")
  return array


def mtan_image(array: np.ndarray, path: os.PathLike | str) -> np.ndarray:
  """MTAN image float [H, W, 3] in [0, 1] -> uint8 (round(255 x)); out of range = error."""
  if array.min() < 0 or array.max() > 1:
    raise readers.DataError(
      f"MTAN image {str(path)!r} has values in [{array.min():.3g}, "
      f"{array.max():.3g}], expected [0, 1]."
    )
  return np.round(array * 255.0).astype(np.uint8)


def unit_normals(vectors: np.ndarray, path: os.PathLike | str) -> tuple[np.ndarray, np.ndarray]:
  """[H, W, 3] -> (unit normals float32 with 0 where invalid, valid [H, W] bool).

  Invalid = exactly the zero vector. Valid lengths must be 1 +- _LENGTH_TOLERANCE.
  """
  vectors = np.asarray(vectors, np.float64)
  length = np.linalg.norm(vectors, axis=-1)
  valid = length > 0
  off = valid & (np.abs(length - 1) > _LENGTH_TOLERANCE)
  if off.any():
    raise readers.DataError(
      f"Normals {str(path)!r}: {int(off.sum())} non-zero vectors are not unit (lengths "
      f"{length[off].min():.3g}..{length[off].max():.3g}); wrong file or decoding."
    )
  safe = np.where(valid, length, 1.0)[..., None]
  return np.where(valid[..., None], vectors / safe, 0.0).astype(np.float32), valid


def mtan_to_camera(normals: np.ndarray) -> np.ndarray:
  """[..., 3] MTAN (x right, y into the scene, z up) -> (x right, y down, z to camera)."""
  return (np.asarray(normals, np.float32) @ MTAN_TO_CAMERA.T).astype(np.float32)


def png_normals(rgb: np.ndarray) -> np.ndarray:
  """[H, W, 3] uint8 -> float [H, W, 3] = value / 127.5 - 1, exactly 0 where (0, 0, 0)."""
  vectors = rgb.astype(np.float64) / 127.5 - 1.0
  return np.where((rgb == 0).all(-1, keepdims=True), 0.0, vectors)


def read_normals_png(path: os.PathLike | str) -> np.ndarray:
  """An RGB normals PNG -> [H, W, 3] uint8 as stored (RGB mode required, no conversion)."""
  return readers.decode_exact(
    readers.read_bytes(path, "normals PNG"), ("RGB",), path, "normals PNG"
  )


def load_raw(record: Record) -> tuple[bytes, np.ndarray, np.ndarray]:
  """(encoded image bytes, normals [H, W, 3] float32 camera frame, valid [H, W] bool)."""
  if record.image_path.suffix == ".npy":
    image = mtan_image(_load_npy(record.image_path, (3,), "MTAN image"), record.image_path)
    image_bytes = readers.encode_png(image)
    normals, valid = unit_normals(
      _load_npy(record.normal_path, (3,), "MTAN normals"), record.normal_path
    )
    normals = mtan_to_camera(normals)
  else:
    image_bytes = readers.read_bytes(record.image_path, "NYUv2 image")
    image = readers.decode_image(image_bytes, record.image_path)
    normals, valid = unit_normals(
      png_normals(read_normals_png(record.normal_path)), record.normal_path
    )
  readers.check_same_size(image, normals, record.normal_path, "normal map")
  return image_bytes, normals, valid


def make_example(
  image: np.ndarray, normals: np.ndarray, valid: np.ndarray, example_id: str | bytes
) -> dict[str, Any]:
  """{image uint8, normals float32, normals_valid bool, id str} after the size check."""
  if isinstance(example_id, bytes):
    example_id = example_id.decode("utf-8")
  normals = np.asarray(normals, np.float32)
  readers.check_same_size(image, normals, example_id, "normal map")
  return {
    "image": image,
    "normals": normals,
    "normals_valid": np.asarray(valid, bool),
    "id": example_id,
  }


def load_example(record: Record) -> dict[str, Any]:
  """One record -> the example (image decoded from the same bytes the TFDS build stores)."""
  image_bytes, normals, valid = load_raw(record)
  return make_example(
    readers.decode_image(image_bytes, record.image_path), normals, valid, record.id
  )


class Nyuv2Normals(readers.ArrayRecordBuilder):
  """NYUv2 surface normals (camera convention): image PNG bytes, normals, validity, id."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: MTAN or PNG layout, camera-frame normals."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.make_info(
      "NYU Depth v2 (Silberman et al. 2012) RGB frames with surface normals in camera "
      "coordinates (x right, y down, z towards the camera) and their validity.",
      {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
        "normals": tfds.features.Tensor(
          shape=(None, None, 3),
          dtype=np.float32,
          encoding=tfds.features.Encoding.ZLIB,
          doc="[H, W, 3] unit normals, 0 where invalid",
        ),
        "normals_valid": tfds.features.Tensor(
          shape=(None, None), dtype=np.bool_, encoding=tfds.features.Encoding.ZLIB
        ),
        "id": tfds.features.Text(),
      },
      _HOMEPAGE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = readers.manual_dir_of(dl_manager, MANUAL_DOWNLOAD_INSTRUCTIONS)
    layout = detect_layout(manual_dir)
    splits = [s for s in SPLITS if (manual_dir / _FOLDERS[layout][s]).is_dir()]
    return {s: self._generate_examples(manual_dir, s) for s in splits}

  def _generate_examples(self, manual_dir: pathlib.Path, split: str) -> Iterator[tuple[int, dict]]:
    for index, record in enumerate(list_split(manual_dir, split)):
      image_bytes, normals, valid = load_raw(record)
      readers.decode_image(image_bytes, record.image_path)  # checked at build time
      yield (
        index,
        {"image": image_bytes, "normals": normals, "normals_valid": valid, "id": record.id},
      )


def _from_record(record) -> dict[str, Any]:
  return make_example(
    readers.decode_image(record["image"], record["id"]),
    record["normals"],
    record["normals_valid"],
    record["id"],
  )


def tfds_source(
  split: str, data_dir: os.PathLike | str | None = None, manual_dir: os.PathLike | str | None = None
) -> readers.TfdsSource:
  """NYUv2 normals from the array_record dataset (built from manual_dir on first use)."""
  if split not in SPLITS:
    raise ValueError(f"NYUv2 split must be one of {SPLITS}, got {split!r}.")
  builder = readers.prepare_builder(
    Nyuv2Normals, data_dir, manual_dir, MANUAL_DOWNLOAD_INSTRUCTIONS
  )
  return readers.TfdsSource(builder, split, _from_record)


def folder_source(split: str, manual_dir: os.PathLike | str) -> readers.ListSource:
  """NYUv2 normals read straight from the manual directory; same examples as tfds_source."""
  return readers.ListSource("nyuv2_normals", split, list_split(manual_dir, split), load_example)


@DATASETS.register(
  "nyuv2_normals",
  defaults=dict(
    data_dir=config_dict.placeholder(str), manual_dir=config_dict.placeholder(str), backend="tfds"
  ),
)
def nyuv2_normals_source(split: str, config) -> readers.TfdsSource | readers.ListSource:
  """The registry's factory: ``data_dir``, ``manual_dir`` (holding train/ and val/ or test/),
  ``backend`` ('tfds' | 'folder'). Splits: 'train', 'test'."""
  backend, manual_dir = readers.check_backend("nyuv2_normals", config, MANUAL_DOWNLOAD_INSTRUCTIONS)
  if backend == "folder":
    return folder_source(split, manual_dir)
  return tfds_source(split, config.get("data_dir"), manual_dir)
