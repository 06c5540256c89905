"""PASCAL-Context, 59-class protocol (VOC2010 images + full-scene labels): TFDS + folder.

The manual directory holds VOC2010 and the official PASCAL-Context files:

  <manual_dir>/VOCdevkit/VOC2010/JPEGImages/<id>.jpg
  <manual_dir>/trainval/<id>.mat         official `trainval.tar.gz`: `LabelMap` [H, W] of
                                         full-list ids 1..459, 0 = unlabelled
  <manual_dir>/classes-400.txt           the 459-class list, "id: name" (the official
                                         `labels.txt` under that name works too)
  <manual_dir>/classes-59.txt            "0: background" + the 59 task classes in order
                                         (fcn.berkeleyvision.org data/pascal-context/)
  <manual_dir>/{train,val}.txt           split lists, one id per line

Split lists are read from the first of: `<manual_dir>/<split>.txt`,
`VOC2010/ImageSets/SegmentationContext/<split>.txt` (mmsegmentation's), or
`VOC2010/ImageSets/Main/<split>.txt` (VOC2010's own, used by fcn: 4,998 train and 5,105
val images, i.e. all of PASCAL-Context's trainval). Examples follow the list order.

Mapping (fcn's `pascalcontext_layers.py`): class k of classes-59.txt is the full-list id
whose name is the same (`diningtable`, `bedcloth`, `clothes` are the full list's `table`,
`bedclothes`, `cloth`); every other full-list id and 0 are background. With
`background='ignore'` (default) the 59 classes are 0..58 and background is 255; with
`background='class'` background is class 0 of 60 (1..59 the classes). A LabelMap value
above 459 is an error.

Examples: image [H, W, 3] uint8, label [H, W] int32, id str.
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from ml_collections import config_dict

from pixelnet_jax.data import readers
from pixelnet_jax.data.registry import DATASETS

SPLITS = ("train", "val")
BACKGROUNDS = ("ignore", "class")
NUM_FULL_CLASSES = 459
NUM_CLASSES = 59  # without background
FULL_LIST_FILES = ("classes-400.txt", "labels.txt")
TASK_LIST_FILE = "classes-59.txt"
# classes-59.txt name -> the full list's name where they differ.
NAME_ALIASES = {"diningtable": "table", "bedcloth": "bedclothes", "clothes": "cloth"}
_VOC_SUBDIR = ("VOCdevkit", "VOC2010")
_HOMEPAGE = "https://cs.stanford.edu/~roozbeh/pascal-context/"

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
PASCAL-Context must be put together by hand (annotations: research use; images: Flickr).
1. VOC2010 images: VOCtrainval_03-May-2010.tar from
     http://host.robots.ox.ac.uk/pascal/VOC/voc2010/
   extracted to <manual_dir>/VOCdevkit/VOC2010/JPEGImages/.
2. Labels: trainval.tar.gz from {_HOMEPAGE}
   extracted to <manual_dir>/trainval/<id>.mat.
3. Class lists: classes-400.txt (or the official labels.txt) and classes-59.txt from
     https://github.com/shelhamer/fcn.berkeleyvision.org/tree/master/data/pascal-context
   into <manual_dir>/.
4. Split lists <manual_dir>/train.txt and val.txt (one id per line), or VOC2010's
   ImageSets/Main/{{train,val}}.txt (used when the former are absent).
Pass the manual directory as config.dataset.manual_dir (default for the TFDS backend:
<data_dir>/downloads/manual/).
"""

_LINE = re.compile(r"^\s*(\d+)\s*:\s*(.+?)\s*$")


def read_class_list(path: os.PathLike | str) -> dict[int, str]:
  """A "id: name" list -> {id: name}; a malformed line is a DataError naming the file."""
  names = {}
  for line in readers.read_list(path, "PASCAL-Context class list"):
    match = _LINE.match(line)
    if not match:
      raise readers.DataError(f"{str(path)!r}: line {line!r} is not 'id: name'.")
    names[int(match.group(1))] = match.group(2)
  return names


def find_class_lists(manual_dir: os.PathLike | str) -> tuple[pathlib.Path, pathlib.Path]:
  """(full 459-class list, 59-class task list) in manual_dir."""
  manual_dir = pathlib.Path(manual_dir)
  for name in FULL_LIST_FILES:
    if (manual_dir / name).is_file():
      full = manual_dir / name
      break
  else:
    raise readers.MissingDataError(
      f"No PASCAL-Context class list {' or '.join(FULL_LIST_FILES)} in {str(manual_dir)!r}."
      f"\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )
  task = readers.require_file(
    manual_dir / TASK_LIST_FILE, "PASCAL-Context 59-class list", MANUAL_DOWNLOAD_INSTRUCTIONS
  )
  return full, task


def full_to_task_table(full_list: os.PathLike | str, task_list: os.PathLike | str) -> np.ndarray:
  """[460] int: full-list id (0..459) -> task class 0..59 (0 = background).

  Task names are found in the full list verbatim or through NAME_ALIASES; a name found
  nowhere, or lists of the wrong length, are a DataError.
  """
  full = read_class_list(full_list)
  task = read_class_list(task_list)
  if sorted(full) != list(range(1, NUM_FULL_CLASSES + 1)):
    raise readers.DataError(
      f"{str(full_list)!r} should list ids 1..{NUM_FULL_CLASSES}, has {len(full)} entries."
    )
  if sorted(task) != list(range(NUM_CLASSES + 1)):
    raise readers.DataError(
      f"{str(task_list)!r} should list ids 0..{NUM_CLASSES} (0: "
      f"background), has {len(task)} entries."
    )
  by_name = {name: i for i, name in full.items()}
  table = np.zeros(NUM_FULL_CLASSES + 1, np.int64)
  for k in range(1, NUM_CLASSES + 1):
    name = NAME_ALIASES.get(task[k], task[k])
    if name not in by_name:
      raise readers.DataError(
        f"Class {task[k]!r} of {str(task_list)!r} is not in "
        f"{str(full_list)!r}: mismatched class lists."
      )
    table[by_name[name]] = k
  return table


def class_names(manual_dir: os.PathLike | str, background: str = "ignore") -> tuple[str, ...]:
  """Names of the label values 0..C-1 (59 without, 60 with background)."""
  names = read_class_list(find_class_lists(manual_dir)[1])
  first = 0 if _check_background(background) == "class" else 1
  return tuple(names[k] for k in range(first, NUM_CLASSES + 1))


def _check_background(background: str) -> str:
  if background not in BACKGROUNDS:
    raise ValueError(
      f"config.dataset.background for pascal_context must be one of "
      f"{BACKGROUNDS}, got {background!r}."
    )
  return background


def apply_background(label60: np.ndarray, background: str) -> tuple[np.ndarray, int]:
  """label [H, W] in 0..59 (0 = background) -> (label int32, number of classes)."""
  label60 = np.asarray(label60).astype(np.int32)
  if _check_background(background) == "class":
    return label60, NUM_CLASSES + 1
  return np.where(label60 == 0, readers.IGNORE_LABEL, label60 - 1).astype(np.int32), NUM_CLASSES


def read_label_map(path: os.PathLike | str) -> np.ndarray:
  """Official `trainval/<id>.mat` -> LabelMap [H, W] (full-list ids, 0 = unlabelled)."""
  path = readers.require_file(path, "PASCAL-Context label", MANUAL_DOWNLOAD_INSTRUCTIONS)
  try:
    label_map = np.asarray(scipy.io.loadmat(os.fspath(path))["LabelMap"])
  except Exception as e:  # scipy's many errors for damaged files; KeyError
    raise readers.DataError(
      f"Cannot read LabelMap from {str(path)!r} ({type(e).__name__}: "
      f"{e}); extract trainval.tar.gz again."
    ) from e
  if label_map.ndim != 2:
    raise readers.DataError(
      f"{str(path)!r}: LabelMap has shape {label_map.shape}, expected [H, W]."
    )
  return label_map


def find_voc_root(manual_dir: os.PathLike | str) -> pathlib.Path:
  path = readers.require_dir(
    manual_dir, "PASCAL-Context manual directory", MANUAL_DOWNLOAD_INSTRUCTIONS
  )
  root = path.joinpath(*_VOC_SUBDIR)
  readers.require_dir(root / "JPEGImages", "VOC2010 images", MANUAL_DOWNLOAD_INSTRUCTIONS)
  return root


def split_list_path(manual_dir: os.PathLike | str, split: str) -> pathlib.Path:
  """The split list read (see the module docstring for the order searched)."""
  voc_root = pathlib.Path(manual_dir).joinpath(*_VOC_SUBDIR)
  candidates = [
    pathlib.Path(manual_dir) / f"{split}.txt",
    voc_root / "ImageSets" / "SegmentationContext" / f"{split}.txt",
    voc_root / "ImageSets" / "Main" / f"{split}.txt",
  ]
  for path in candidates:
    if path.is_file():
      return path
  raise readers.MissingDataError(
    f"No PASCAL-Context {split} list: none of {[str(p) for p in candidates]} exists."
    f"\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
  )


def _has_list(manual_dir: os.PathLike | str, split: str) -> bool:
  try:
    return bool(split_list_path(manual_dir, split))
  except readers.MissingDataError:
    return False


def list_split(
  manual_dir: os.PathLike | str, split: str
) -> list[tuple[str, pathlib.Path, pathlib.Path]]:
  """(id, image_path, mat_path) per listed id, in list order."""
  if split not in SPLITS:
    raise ValueError(f"PASCAL-Context split must be one of {SPLITS}, got {split!r}.")
  voc_root = find_voc_root(manual_dir)
  path = split_list_path(manual_dir, split)
  ids = [line.split()[0] for line in readers.read_list(path)]
  return [
    (i, voc_root / "JPEGImages" / f"{i}.jpg", pathlib.Path(manual_dir) / "trainval" / f"{i}.mat")
    for i in ids
  ]


class _Reader:
  """Reads one record into the 60-valued label (0 = background); holds the class table."""

  def __init__(self, manual_dir: os.PathLike | str, background: str = "ignore"):
    self.table = full_to_task_table(*find_class_lists(manual_dir))
    self.background = _check_background(background)

  def label60(self, image: np.ndarray, mat_path: pathlib.Path) -> np.ndarray:
    label60 = readers.remap_labels(read_label_map(mat_path), self.table, NUM_CLASSES + 1, mat_path)
    readers.check_same_size(image, label60, mat_path)
    return label60

  def __call__(self, record) -> dict[str, Any]:
    example_id, image_path, mat_path = record
    image = readers.read_image(image_path)
    label, num_classes = apply_background(self.label60(image, mat_path), self.background)
    return readers.segmentation_example(image, label, example_id, num_classes, mat_path)


class PascalContext(readers.ArrayRecordBuilder):
  """PASCAL-Context: image JPEG bytes, 60-valued label (0 = background), id."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: image, label (0 background, 1..59), id."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.make_info(
      "PASCAL-Context (Mottaghi et al. 2014) on VOC2010 images, the 59-class protocol; "
      "label 0 = background (the other 400 classes and unlabelled), 1..59 the classes.",
      readers.segmentation_features("jpeg", "[H, W] 0 background, 1..59 classes"),
      _HOMEPAGE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = readers.manual_dir_of(dl_manager, MANUAL_DOWNLOAD_INSTRUCTIONS)
    reader = _Reader(manual_dir)
    splits = [s for s in SPLITS if _has_list(manual_dir, s)] or SPLITS  # none: list_split says
    return {s: self._generate_examples(manual_dir, s, reader) for s in splits}

  def _generate_examples(
    self, manual_dir: pathlib.Path, split: str, reader: _Reader
  ) -> Iterator[tuple[int, dict]]:
    for index, (example_id, image_path, mat_path) in enumerate(list_split(manual_dir, split)):
      image = readers.read_image(image_path)  # checked at build time
      yield (
        index,
        {
          "image": readers.read_bytes(image_path),
          "label": reader.label60(image, mat_path).astype(np.uint8),
          "id": example_id,
        },
      )


def _from_record(record, background: str) -> dict[str, Any]:
  image = readers.decode_image(record["image"], record["id"])
  label, num_classes = apply_background(record["label"], background)
  return readers.segmentation_example(image, label, record["id"], num_classes)


def tfds_source(
  split: str,
  data_dir: os.PathLike | str | None = None,
  manual_dir: os.PathLike | str | None = None,
  background: str = "ignore",
) -> readers.TfdsSource:
  """PASCAL-Context from the array_record dataset (built from manual_dir on first use)."""
  if split not in SPLITS:
    raise ValueError(f"PASCAL-Context split must be one of {SPLITS}, got {split!r}.")
  _check_background(background)
  builder = readers.prepare_builder(
    PascalContext, data_dir, manual_dir, MANUAL_DOWNLOAD_INSTRUCTIONS
  )
  return readers.TfdsSource(
    builder,
    split,
    functools.partial(_from_record, background=background),
    label_palette=readers.voc_palette(),
  )


def folder_source(
  split: str, manual_dir: os.PathLike | str, background: str = "ignore"
) -> readers.ListSource:
  """PASCAL-Context read straight from the manual directory; same examples as tfds_source."""
  return readers.ListSource(
    "pascal_context",
    split,
    list_split(manual_dir, split),
    _Reader(manual_dir, background),
    readers.voc_palette(),
  )


@DATASETS.register(
  "pascal_context",
  defaults=dict(
    data_dir=config_dict.placeholder(str),
    manual_dir=config_dict.placeholder(str),
    backend="tfds",
    background="ignore",
  ),
)
def pascal_context_source(split: str, config) -> readers.TfdsSource | readers.ListSource:
  """The registry's factory: ``data_dir``, ``manual_dir``, ``backend`` ('tfds' | 'folder'),
  ``background`` ('ignore': 59 classes 0..58, background 255 | 'class': 60, background 0)."""
  backend, manual_dir = readers.check_backend(
    "pascal_context", config, MANUAL_DOWNLOAD_INSTRUCTIONS
  )
  background = config.get("background") or "ignore"
  if backend == "folder":
    return folder_source(split, manual_dir, background)
  return tfds_source(split, config.get("data_dir"), manual_dir, background)
