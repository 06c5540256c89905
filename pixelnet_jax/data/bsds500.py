"""BSDS500 (Berkeley Segmentation Dataset 500): a TFDS builder and random-access sources.

The official archive `BSR_bsds500.tgz` cannot be downloaded automatically (it sits behind
a licence page), so the builder reads it from TFDS's manual directory, either as the
archive itself or as its extracted `BSR/` folder:

  <manual_dir>/BSR_bsds500.tgz                           (the archive), or
  <manual_dir>/BSR/BSDS500/data/images/{train,val,test}/<id>.jpg
  <manual_dir>/BSR/BSDS500/data/groundTruth/{train,val,test}/<id>.mat

Splits are the ones present (the shared sample has train and val only).

Stored features (`array_record`, readable without TensorFlow):
  image          [H, W, 3] uint8, the original JPEG bytes (never re-encoded).
  boundaries     [A, H, W] uint8 0/1, one map per annotator (A varies per image, 4-9).
  segmentations  [A, H, W] uint16 region ids, one map per annotator.
  id             the file id, e.g. '100075'.

Sources (`Bsds500Source`, `Bsds500FolderSource`) return the project's example dicts:
  image          [H, W, 3] uint8
  edges          [H, W] float32 = mean over annotators of their Boundaries maps
  boundaries     [A, H, W] uint8 (for the BSDS benchmark, which matches each annotator)
  segmentations  [A, H, W] uint16
  id             str
"""

from __future__ import annotations

import os
import pathlib
import tarfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from etils import epath
from ml_collections import config_dict

from pixelnet_jax.data import readers
from pixelnet_jax.data.registry import DATASETS

SPLITS = ("train", "val", "test")
ARCHIVE_NAME = "BSR_bsds500.tgz"
# Where the image/groundTruth folders live inside the archive and the extracted folder.
_DATA_SUBDIR = ("BSR", "BSDS500", "data")
_HOMEPAGE = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/resources.html"

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
BSDS500 must be downloaded by hand (non-commercial research and educational use).
1. Download `{ARCHIVE_NAME}` (~70 MB) from the "Resources" page of the Berkeley
   grouping project:
     {_HOMEPAGE}
   (direct link at the time of writing:
     http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz)
2. Put the archive, or the `BSR/` folder it extracts to, in the manual directory:
     <manual_dir>/{ARCHIVE_NAME}
   or
     <manual_dir>/BSR/BSDS500/data/{{images,groundTruth}}/{{train,val,test}}
   The manual directory defaults to `<data_dir>/downloads/manual/`; pass another one
   with `manual_dir=` (config field `config.dataset.manual_dir`) or
   `tfds.download.DownloadConfig(manual_dir=...)`.
"""


class Bsds500DataError(FileNotFoundError):
  """The BSDS500 files are missing or laid out differently than expected."""


def _missing(message: str) -> Bsds500DataError:
  return Bsds500DataError(f"{message}\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")


# ---------------------------------------------------------------------------------------
# Reading the extracted folder (shared by the builder and the folder source).


def find_data_root(path: os.PathLike | str) -> pathlib.Path:
  """Returns the `.../BSDS500/data` folder under `path` (holding images/, groundTruth/).

  Accepts the manual directory (containing `BSR/`), the `BSR/` folder itself, or any
  folder down to `data/`. Raises Bsds500DataError with download instructions otherwise.
  """
  path = pathlib.Path(path).expanduser()
  if not path.is_dir():
    raise _missing(f"BSDS500 directory {str(path)!r} does not exist.")
  for depth in range(len(_DATA_SUBDIR) + 1):
    candidate = path.joinpath(*_DATA_SUBDIR[depth:])
    if (candidate / "images").is_dir() and (candidate / "groundTruth").is_dir():
      return candidate
  raise _missing(
    f"No BSDS500 data under {str(path)!r}: expected "
    f"{os.path.join(str(path), *_DATA_SUBDIR)}/{{images,groundTruth}}/<split>/ "
    f"(or the archive {ARCHIVE_NAME} in the manual directory)."
  )


def available_splits(data_root: os.PathLike | str) -> list[str]:
  """The splits (in SPLITS order) whose image folder exists under `data_root`."""
  root = pathlib.Path(data_root)
  return [s for s in SPLITS if (root / "images" / s).is_dir()]


def list_split(
  data_root: os.PathLike | str, split: str
) -> list[tuple[str, pathlib.Path, pathlib.Path]]:
  """Sorted (id, image_path, ground_truth_path) of one split; every image needs its .mat."""
  if split not in SPLITS:
    raise ValueError(f"BSDS500 split must be one of {SPLITS}, got {split!r}.")
  root = pathlib.Path(data_root)
  image_dir, gt_dir = root / "images" / split, root / "groundTruth" / split
  if not image_dir.is_dir():
    raise _missing(
      f"BSDS500 split {split!r} not found: no folder {str(image_dir)!r} "
      f"(splits present: {available_splits(root)})."
    )
  files = []
  for image_path in sorted(image_dir.glob("*.jpg")):
    gt_path = gt_dir / f"{image_path.stem}.mat"
    if not gt_path.is_file():
      raise _missing(
        f"BSDS500 ground truth {str(gt_path)!r} is missing for image {str(image_path)!r}."
      )
    files.append((image_path.stem, image_path, gt_path))
  if not files:
    raise _missing(f"BSDS500 split {split!r}: no .jpg images in {str(image_dir)!r}.")
  return files


def decode_image(data: bytes, name: os.PathLike | str | None = None) -> np.ndarray:
  """JPEG/PNG bytes -> image [H, W, 3] uint8 RGB (PIL, the one decoder used everywhere).

  A corrupt or truncated file is a readers.DataError naming `name`.
  """
  return readers.decode_image(data, name)


_GT_EXPECTED = (
  "a BSDS .mat with a 1 x A groundTruth cell of structs, each holding "
  "[H, W] Boundaries (0/1) and Segmentation (region ids) of one size"
)


def read_ground_truth(path: os.PathLike | str) -> tuple[np.ndarray, np.ndarray]:
  """Reads a BSDS `.mat` file; a damaged or malformed file is a ValueError naming it.

  Returns:
    boundaries [A, H, W] uint8 (0/1) and segmentations [A, H, W] uint16, one per
    annotator, in the file's order.
  """

  def bad(what: str, cause: Exception | None = None) -> ValueError:
    detail = f" ({type(cause).__name__}: {cause})" if cause else ""
    return ValueError(
      f"BSDS500 ground truth {os.fspath(path)}: {what}; expected {_GT_EXPECTED}{detail}."
    )

  try:
    mat = scipy.io.loadmat(os.fspath(path))
  except Exception as e:  # pylint: disable=broad-except
    raise bad("cannot read the file", e) from e
  if "groundTruth" not in mat:
    raise bad(
      f"no groundTruth variable (it holds {sorted(k for k in mat if not k.startswith('__'))})"
    )
  cells = mat["groundTruth"]  # 1 x A cell of structs
  if cells.ndim != 2 or cells.shape[0] != 1 or cells.shape[1] < 1:
    raise bad(f"groundTruth has shape {cells.shape}")
  try:
    annotations = [cells[0, a] for a in range(cells.shape[1])]
    raw_b = [np.asarray(s["Boundaries"][0, 0]) for s in annotations]
    raw_s = [np.asarray(s["Segmentation"][0, 0]) for s in annotations]
  except Exception as e:  # pylint: disable=broad-except
    raise bad("groundTruth is not a cell of structs with Boundaries and Segmentation", e) from e
  shape = raw_b[0].shape
  for a, (b, seg) in enumerate(zip(raw_b, raw_s)):
    for name, m in (("Boundaries", b), ("Segmentation", seg)):
      if m.ndim != 2 or m.shape != shape or not m.size:
        raise bad(f"annotator {a + 1} {name} has shape {m.shape} (annotator 1 Boundaries: {shape})")
      if not (np.issubdtype(m.dtype, np.number) or m.dtype == np.bool_):
        raise bad(f"annotator {a + 1} {name} has dtype {m.dtype}")
    if not np.isin(b, (0, 1)).all():
      raise bad(f"annotator {a + 1} Boundaries holds values other than 0 and 1")
    if seg.min() < 0 or seg.max() > np.iinfo(np.uint16).max or (seg != np.round(seg)).any():
      raise bad(f"annotator {a + 1} Segmentation holds values that are not uint16 ids")
  return np.stack(raw_b).astype(np.uint8), np.stack(raw_s).astype(np.uint16)


def _check_sizes(image_shape, boundaries: np.ndarray, image_path, gt_path) -> None:
  if tuple(image_shape[:2]) != boundaries.shape[1:]:
    raise ValueError(
      f"BSDS500 image {os.fspath(image_path)} is {tuple(image_shape[:2])} "
      f"(rows, cols) but its ground truth {os.fspath(gt_path)} is "
      f"{boundaries.shape[1:]}; expected the same size."
    )


def make_example(
  image: np.ndarray, boundaries: np.ndarray, segmentations: np.ndarray, example_id: str | bytes
) -> dict[str, Any]:
  """The project's example dict; `edges [H, W] float32` = mean of annotators' boundaries."""
  if isinstance(example_id, bytes):
    example_id = example_id.decode("utf-8")
  if image.shape[:2] != boundaries.shape[1:]:
    raise ValueError(
      f"BSDS500 example {example_id}: image {image.shape} and boundaries "
      f"{boundaries.shape} differ in size."
    )
  return {
    "image": image,
    "edges": boundaries.astype(np.float32).mean(axis=0),
    "boundaries": boundaries,
    "segmentations": segmentations,
    "id": example_id,
  }


# ---------------------------------------------------------------------------------------
# The archive.


def extract_archive(archive: os.PathLike | str, target_dir: os.PathLike | str) -> pathlib.Path:
  """Extracts the `BSR/BSDS500/data/` part of BSR_bsds500.tgz; returns the data root.

  Python's tarfile is used because TFDS's extractor needs TensorFlow. A marker file
  makes a completed extraction reusable.
  """
  target = pathlib.Path(target_dir)
  marker = target / ".bsds500_extracted"
  if not marker.exists():
    prefix = "/".join(_DATA_SUBDIR) + "/"
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(os.fspath(archive), "r:*") as tar:
      members = [
        m
        for m in tar.getmembers()
        if m.name.startswith(prefix)
        and (m.isfile() or m.isdir())
        and ".." not in pathlib.PurePosixPath(m.name).parts
      ]
      if not any(m.isfile() for m in members):
        raise _missing(f"{str(archive)!r} holds no {prefix} folder: is it {ARCHIVE_NAME}?")
      kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
      tar.extractall(target, members=members, **kwargs)
    marker.touch()
  return find_data_root(target)


def resolve_manual_dir(
  manual_dir: os.PathLike | str, extract_dir: os.PathLike | str | None = None
) -> pathlib.Path:
  """The data root from a manual dir holding `BSR/` or the archive (extracted to extract_dir)."""
  manual_dir = pathlib.Path(manual_dir).expanduser()
  try:
    return find_data_root(manual_dir)
  except Bsds500DataError:
    archive = manual_dir / ARCHIVE_NAME
    if not archive.is_file():
      raise
  return extract_archive(archive, extract_dir or manual_dir / "extracted")


# ---------------------------------------------------------------------------------------
# The TFDS builder.


class Bsds500(tfds.core.GeneratorBasedBuilder):
  """BSDS500 images with every annotator's boundaries and segmentation."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: image, boundaries, segmentations, id."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  # Keep the sorted-id order of the files, as the BSDS benchmark lists per-image results.
  disable_shuffling = True

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS finds checksums/metadata next to the builder's code through the top-level
    # package's resources, which fails for namespace packages; name this file directly.
    return epath.Path(__file__)

  def __init__(self, *, file_format: str | None = "array_record", **kwargs):
    # array_record: random access (tfds.data_source) without TensorFlow.
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: dataset_info_from_configs would look for metadata files
    # (checksums, citations) next to this module.
    return tfds.core.DatasetInfo(
      builder=self,
      description="BSDS500 natural images with 4-9 human boundary and segmentation "
      "annotations each (Arbelaez et al., TPAMI 2011).",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
          "boundaries": tfds.features.Tensor(
            shape=(None, None, None),
            dtype=np.uint8,
            encoding=tfds.features.Encoding.ZLIB,
            doc="[annotators, H, W] 0/1 boundary maps",
          ),
          "segmentations": tfds.features.Tensor(
            shape=(None, None, None),
            dtype=np.uint16,
            encoding=tfds.features.Encoding.ZLIB,
            doc="[annotators, H, W] region ids",
          ),
          "id": tfds.features.Text(),
        }
      ),
      homepage=_HOMEPAGE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError as e:  # TFDS's "does not exist or is empty"
      raise _missing(str(e).split(" Create it")[0]) from e
    root = resolve_manual_dir(
      os.fspath(manual_dir), os.fspath(dl_manager.download_dir / "bsds500_extracted")
    )
    splits = available_splits(root)
    if not splits:
      raise _missing(f"No split folder ({'/'.join(SPLITS)}) under {str(root / 'images')!r}.")
    return {split: self._generate_examples(root, split) for split in splits}

  def _generate_examples(self, root: pathlib.Path, split: str) -> Iterator[tuple[str, dict]]:
    for example_id, image_path, gt_path in list_split(root, split):
      boundaries, segmentations = read_ground_truth(gt_path)
      data = image_path.read_bytes()
      # Decoded once only to check it: a damaged file fails here, named, not at read time.
      _check_sizes(decode_image(data, str(image_path)).shape, boundaries, image_path, gt_path)
      yield (
        example_id,
        {
          "image": data,  # the JPEG as is: no TensorFlow encoder needed
          "boundaries": boundaries,
          "segmentations": segmentations,
          "id": example_id,
        },
      )


def build(
  data_dir: os.PathLike | str | None = None, manual_dir: os.PathLike | str | None = None
) -> Bsds500:
  """Prepares the TFDS dataset if needed and returns the builder.

  Args:
    data_dir: TFDS data dir (default: TFDS's, i.e. ~/tensorflow_datasets).
    manual_dir: where BSR_bsds500.tgz or BSR/ is (default: <data_dir>/downloads/manual).
  """
  builder = Bsds500(data_dir=os.fspath(data_dir) if data_dir else None)
  if not builder.is_prepared():
    manual = pathlib.Path(os.fspath(manual_dir)) if manual_dir else None
    if manual is None:
      manual = pathlib.Path(os.fspath(builder.data_dir_root)) / "downloads" / "manual"
    if not manual.is_dir():
      raise _missing(
        f"The BSDS500 TFDS dataset is not prepared in {builder.data_dir!r} "
        f"and the manual directory {str(manual)!r} does not exist."
      )
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual))
    )
  return builder


# ---------------------------------------------------------------------------------------
# Random-access sources (grain RandomAccessDataSource-compatible).


class Bsds500Source:
  """BSDS500 read from the prepared TFDS array_record files (built on first use).

  `source[i]` -> {image [H, W, 3] uint8, edges [H, W] float32, boundaries [A, H, W]
  uint8, segmentations [A, H, W] uint16, id str}.
  """

  def __init__(
    self,
    split: str,
    data_dir: os.PathLike | str | None = None,
    manual_dir: os.PathLike | str | None = None,
  ):
    if split not in SPLITS:
      raise ValueError(f"BSDS500 split must be one of {SPLITS}, got {split!r}.")
    builder = build(data_dir, manual_dir)
    if split not in builder.info.splits:
      raise _missing(
        f"BSDS500 split {split!r} was not in the manual directory when the "
        f"dataset was built (splits: {sorted(builder.info.splits)})."
      )
    self.split = split
    # Image bytes decoded here with PIL, the same decoder as Bsds500FolderSource.
    self._records = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = self._records[index]
    record_id = record["id"]
    if isinstance(record_id, bytes):
      record_id = record_id.decode("utf-8")
    source = f"{record_id!r} of split {self.split!r}"
    return make_example(
      decode_image(record["image"], source),
      record["boundaries"],
      record["segmentations"],
      record["id"],
    )

  def __repr__(self) -> str:
    return f"Bsds500Source(split={self.split!r}, len={len(self)})"


class Bsds500FolderSource:
  """BSDS500 read straight from the extracted `BSR/` folder (no TFDS build step).

  Same examples as Bsds500Source; handy for quick experiments and the benchmark.
  """

  def __init__(self, split: str, manual_dir: os.PathLike | str):
    self.split = split
    self._files = list_split(find_data_root(manual_dir), split)

  def __len__(self) -> int:
    return len(self._files)

  def __getitem__(self, index: int) -> dict[str, Any]:
    example_id, image_path, gt_path = self._files[index]
    boundaries, segmentations = read_ground_truth(gt_path)
    image = decode_image(image_path.read_bytes(), str(image_path))
    _check_sizes(image.shape, boundaries, image_path, gt_path)
    return make_example(image, boundaries, segmentations, example_id)

  def __repr__(self) -> str:
    return f"Bsds500FolderSource(split={self.split!r}, len={len(self)})"


@DATASETS.register(
  "bsds500",
  defaults=dict(
    data_dir=config_dict.placeholder(str), manual_dir=config_dict.placeholder(str), backend="tfds"
  ),
)
def bsds500_source(split: str, config) -> Bsds500Source | Bsds500FolderSource:
  """The registry's factory.

  Config fields: ``data_dir`` (TFDS data dir), ``manual_dir`` (where BSR_bsds500.tgz or
  BSR/ is), ``backend`` ('tfds': build/read the array_record dataset; 'folder': read the
  extracted BSR/ folder in manual_dir directly).
  """
  backend = config.get("backend") or "tfds"
  manual_dir = config.get("manual_dir")
  if backend == "tfds":
    return Bsds500Source(split, data_dir=config.get("data_dir"), manual_dir=manual_dir)
  if backend == "folder":
    if not manual_dir:
      raise FileNotFoundError(
        'config.dataset.backend="folder" needs config.dataset.manual_dir (the folder '
        "holding BSR/).\n\n" + MANUAL_DOWNLOAD_INSTRUCTIONS
      )
    return Bsds500FolderSource(split, manual_dir)
  raise ValueError(
    f'config.dataset.backend for bsds500 must be "tfds" or "folder", got {backend!r}.'
  )
