"""PASCAL VOC 2012 segmentation (21 classes), optionally augmented with SBD: TFDS + folder.

The manual directory holds the extracted VOC archive and, for `train_aug`, SBD:

  <manual_dir>/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
  <manual_dir>/VOCdevkit/VOC2012/SegmentationClass/<id>.png      palette PNG of class ids
  <manual_dir>/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt
  <manual_dir>/benchmark_RELEASE/dataset/  or  <manual_dir>/dataset/     (SBD, optional)
      cls/<id>.mat          GTcls.Segmentation, class ids 0..20
      img/<id>.jpg          (optional: VOC's JPEGImages/<id>.jpg is used otherwise)
      train.txt, val.txt    (optional: without them every id in cls/ is used)

Splits: `train`, `val`, `trainval` (VOC's lists, in list order) and `train_aug` = VOC
train ∪ SBD (train + val lists) minus every VOC val id, sorted by id (10,582 images with
the full data). A train_aug id with a VOC SegmentationClass label (VOC train) takes it;
the others take SBD's label.

Label PNGs are read as palette indices (PIL mode 'P', never through colours): 0
background, 1..20 the classes, 255 the void/boundary band = ignore (kept as 255). SBD has
no void band. Any other value is an error.

Examples: image [H, W, 3] uint8, label [H, W] int32 (255 = ignore), id str.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from ml_collections import config_dict

from pixelnet_jax.data import readers
from pixelnet_jax.data.registry import DATASETS

SPLITS = ("train", "val", "trainval", "train_aug")
CLASS_NAMES = (
  "background",
  "aeroplane",
  "bicycle",
  "bird",
  "boat",
  "bottle",
  "bus",
  "car",
  "cat",
  "chair",
  "cow",
  "diningtable",
  "dog",
  "horse",
  "motorbike",
  "person",
  "pottedplant",
  "sheep",
  "sofa",
  "train",
  "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)
_VOC_SUBDIR = ("VOCdevkit", "VOC2012")
_SBD_SUBDIRS = (("benchmark_RELEASE", "dataset"), ("dataset",))
_HOMEPAGE = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"
_SBD_HOMEPAGE = "http://home.bharathh.info/pubs/codes/SBD/download.html"

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
PASCAL VOC 2012 must be downloaded by hand (images: Flickr terms; annotations: research).
1. Download VOCtrainval_11-May-2012.tar (~2 GB) from {_HOMEPAGE}
   and extract it in the manual directory:
     <manual_dir>/VOCdevkit/VOC2012/{{JPEGImages,SegmentationClass,ImageSets/Segmentation}}
2. For the `train_aug` split also get SBD (benchmark.tgz, ~1.4 GB) from
     {_SBD_HOMEPAGE}
   and extract it there too:
     <manual_dir>/benchmark_RELEASE/dataset/{{cls,img,train.txt,val.txt}}
   (or <manual_dir>/dataset/...).
Pass the manual directory as config.dataset.manual_dir (default for the TFDS backend:
<data_dir>/downloads/manual/).
"""


class Record(NamedTuple):
  """One example's files: label_path is a VOC PNG or an SBD `cls/*.mat`."""

  id: str
  image_path: pathlib.Path
  label_path: pathlib.Path


def find_voc_root(manual_dir: os.PathLike | str) -> pathlib.Path:
  """`VOCdevkit/VOC2012` under manual_dir (or manual_dir if it is VOCdevkit/ or VOC2012/)."""
  path = readers.require_dir(manual_dir, "VOC2012 manual directory", MANUAL_DOWNLOAD_INSTRUCTIONS)
  for depth in range(len(_VOC_SUBDIR) + 1):
    root = path.joinpath(*_VOC_SUBDIR[depth:])
    if (root / "ImageSets" / "Segmentation").is_dir():
      return root
  raise readers.MissingDataError(
    f"No VOC2012 under {str(path)!r}: expected {str(path.joinpath(*_VOC_SUBDIR))}/"
    f"ImageSets/Segmentation/.\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
  )


def find_sbd_root(manual_dir: os.PathLike | str) -> pathlib.Path | None:
  """SBD's `dataset/` folder (holding cls/) in manual_dir, or None."""
  for sub in _SBD_SUBDIRS:
    root = pathlib.Path(manual_dir).joinpath(*sub)
    if (root / "cls").is_dir():
      return root
  return None


def _voc_list(voc_root: pathlib.Path, split: str) -> list[str]:
  path = voc_root / "ImageSets" / "Segmentation" / f"{split}.txt"
  return [line.split()[0] for line in readers.read_list(path, f"VOC2012 {split} list")]


def sbd_ids(sbd_root: pathlib.Path) -> list[str]:
  """Ids of SBD train.txt + val.txt, or every `cls/*.mat` when neither list exists."""
  lists = [sbd_root / f"{s}.txt" for s in ("train", "val")]
  if any(p.is_file() for p in lists):
    return [
      line.split()[0] for p in lists if p.is_file() for line in readers.read_list(p, "SBD list")
    ]
  return sorted(p.stem for p in (sbd_root / "cls").glob("*.mat"))


def list_split(manual_dir: os.PathLike | str, split: str) -> list[Record]:
  """The split's records: VOC lists in list order; train_aug sorted by id."""
  if split not in SPLITS:
    raise ValueError(f"VOC2012 split must be one of {SPLITS}, got {split!r}.")
  voc_root = find_voc_root(manual_dir)
  images, labels = voc_root / "JPEGImages", voc_root / "SegmentationClass"
  if split != "train_aug":
    return [Record(i, images / f"{i}.jpg", labels / f"{i}.png") for i in _voc_list(voc_root, split)]
  sbd_root = find_sbd_root(manual_dir)
  if sbd_root is None:
    raise readers.MissingDataError(
      f"VOC2012 split 'train_aug' needs SBD: no "
      f"{' or '.join(str(pathlib.Path(manual_dir).joinpath(*s, 'cls')) for s in _SBD_SUBDIRS)}"
      f".\n\n{MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )
  voc_train = set(_voc_list(voc_root, "train"))
  ids = sorted((voc_train | set(sbd_ids(sbd_root))) - set(_voc_list(voc_root, "val")))
  records = []
  for i in ids:
    if i in voc_train:
      records.append(Record(i, images / f"{i}.jpg", labels / f"{i}.png"))
    else:
      image = sbd_root / "img" / f"{i}.jpg"
      records.append(
        Record(i, image if image.is_file() else images / f"{i}.jpg", sbd_root / "cls" / f"{i}.mat")
      )
  return records


def read_sbd_label(path: os.PathLike | str) -> np.ndarray:
  """SBD `cls/<id>.mat` -> label [H, W] uint8 (GTcls.Segmentation, class ids 0..20)."""
  path = readers.require_file(path, "SBD label", MANUAL_DOWNLOAD_INSTRUCTIONS)
  try:
    gt = scipy.io.loadmat(os.fspath(path), squeeze_me=True, struct_as_record=False)["GTcls"]
    segmentation = np.asarray(gt.Segmentation)
  except Exception as e:  # scipy's many errors for damaged files; KeyError, AttributeError
    raise readers.DataError(
      f"Cannot read GTcls.Segmentation from SBD file {str(path)!r} "
      f"({type(e).__name__}: {e}); extract benchmark.tgz again."
    ) from e
  if segmentation.ndim != 2:
    raise readers.DataError(
      f"SBD file {str(path)!r}: GTcls.Segmentation has shape {segmentation.shape}, expected [H, W]."
    )
  return segmentation


def read_label(path: os.PathLike | str) -> np.ndarray:
  """A VOC SegmentationClass PNG or an SBD cls .mat -> label [H, W] (values unchecked)."""
  if pathlib.Path(path).suffix == ".mat":
    return read_sbd_label(path)
  return readers.read_index_png(path)


def load_example(record: Record) -> dict[str, Any]:
  """One record -> {image, label, id}, with size and value checks."""
  return readers.segmentation_example(
    readers.read_image(record.image_path),
    read_label(record.label_path),
    record.id,
    NUM_CLASSES,
    record.label_path,
  )


class Voc2012(readers.ArrayRecordBuilder):
  """VOC 2012 segmentation (+ SBD train_aug): image JPEG bytes, label, id."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: train, val, trainval, train_aug (with SBD)."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.make_info(
      "PASCAL VOC 2012 semantic segmentation, 20 classes + background, 255 = void; "
      "train_aug adds the SBD annotations (Hariharan et al. 2011).",
      readers.segmentation_features("jpeg", "[H, W] classes 0..20, 255 = ignore"),
      _HOMEPAGE,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = readers.manual_dir_of(dl_manager, MANUAL_DOWNLOAD_INSTRUCTIONS)
    voc_root = find_voc_root(manual_dir)
    splits = [s for s in SPLITS[:3] if _voc_list(voc_root, s)]  # empty lists: no split
    if find_sbd_root(manual_dir) is not None:
      splits.append("train_aug")
    return {s: self._generate_examples(manual_dir, s) for s in splits}

  def _generate_examples(self, manual_dir: pathlib.Path, split: str) -> Iterator[tuple[int, dict]]:
    for index, record in enumerate(list_split(manual_dir, split)):
      example = load_example(record)  # checks the files at build time
      yield (
        index,
        {
          "image": readers.read_bytes(record.image_path),
          "label": example["label"].astype(np.uint8),
          "id": record.id,
        },
      )


def _from_record(record) -> dict[str, Any]:
  return readers.segmentation_example(
    readers.decode_image(record["image"], record["id"]), record["label"], record["id"], NUM_CLASSES
  )


def tfds_source(
  split: str, data_dir: os.PathLike | str | None = None, manual_dir: os.PathLike | str | None = None
) -> readers.TfdsSource:
  """VOC2012 from the array_record dataset in data_dir (built from manual_dir on first use).

  Splits with an empty list are not built; train_aug only when SBD was in manual_dir.
  """
  if split not in SPLITS:
    raise ValueError(f"VOC2012 split must be one of {SPLITS}, got {split!r}.")
  builder = readers.prepare_builder(Voc2012, data_dir, manual_dir, MANUAL_DOWNLOAD_INSTRUCTIONS)
  return readers.TfdsSource(builder, split, _from_record, label_palette=readers.voc_palette())


def folder_source(split: str, manual_dir: os.PathLike | str) -> readers.ListSource:
  """VOC2012 read straight from the manual directory; same examples as tfds_source."""
  return readers.ListSource(
    "voc2012", split, list_split(manual_dir, split), load_example, readers.voc_palette()
  )


@DATASETS.register(
  "voc2012",
  defaults=dict(
    data_dir=config_dict.placeholder(str), manual_dir=config_dict.placeholder(str), backend="tfds"
  ),
)
def voc2012_source(split: str, config) -> readers.TfdsSource | readers.ListSource:
  """The registry's factory: ``data_dir`` (TFDS), ``manual_dir`` (holding VOCdevkit/ and
  optionally SBD), ``backend`` ('tfds' | 'folder')."""
  backend, manual_dir = readers.check_backend("voc2012", config, MANUAL_DOWNLOAD_INSTRUCTIONS)
  if backend == "folder":
    return folder_source(split, manual_dir)
  return tfds_source(split, config.get("data_dir"), manual_dir)
