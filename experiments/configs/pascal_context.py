"""PixelNet semantic segmentation on PASCAL-Context, the 59-class protocol: train -> val.

Variants (``--config experiments/configs/pascal_context.py[:variant]``; a variant is a
comma-separated list of the words below, e.g. ``:cpu,60``):

- (none): the paper's accelerator setting (``config_base.paper_config``: VGG-16 with
  BatchNorm, 224^2 crops, 5 images x 2,000 pixels sampled uniformly over labelled pixels,
  MLP 4096^2, SGD as in ``default.py``), read through the TFDS builder. Trained on
  ``train`` (4,998 VOC2010 images) and scored on ``val`` (5,105) at native resolution.
- ``cpu``: the same data sized for 2 CPU cores (``config_base.segmentation_cpu_config``),
  read from the extracted folders (``backend='folder'``). Not run here: no PASCAL-Context
  label maps are on this machine.
- ``60``: background kept as class 0 of 60 (``dataset.background='class'``) instead of
  ignored. The default, 59 classes with background ignored (255), is the common protocol
  (FCN, and the numbers most papers report); the 60-class variant also scores the
  "everything else" region, which is easy and raises pixel accuracy more than mIoU.

Data: ``<manual_dir>/VOCdevkit/VOC2010/JPEGImages``, the official ``trainval/<id>.mat``
label maps, ``classes-400.txt`` / ``classes-59.txt`` and the split lists; see
``pixelnet_jax/data/pascal_context.py``. ``manual_dir`` defaults to
``$PIXELNET_TEST_DATA/pascal_context`` (the test samples hold only the class lists, so
the sources stop there with the expected tree) and must otherwise be given with
``--config.dataset.manual_dir=...``.

Choices of ``cpu``, and why:
- Scale: VOC2010 images (~500x375) resized by 0.5-0.8 for training and 0.65 for the
  evaluation (logits resized back): context classes (sky, grass, wall) are large
  regions, and smaller images let a 176^2 crop see more of the scene per FLOP.
- Sampling: class-stratified, equal shares over the classes present in each image:
  59 classes with a long tail (many objects cover < 0.1% of the pixels); uniform
  sampling would almost never show the rare ones to the MLP.
- Steps: 6,000 x 4 images (about 5 epochs of train), the budget of
  ``camvid_segmentation.py:cpu``; val is scored at the end only (5,105 dense images;
  ``--config.dataset.num_eval_examples`` shortens it for a quick look).
"""

from pixelnet_jax import config_base

# Folder under $PIXELNET_TEST_DATA of the PASCAL-Context samples (the class lists).
SAMPLE_DIR = "pascal_context"
WORDS = ("cpu", "60")


def paper():
  c = config_base.paper_config("segmentation", dataset="pascal_context")
  c.task.num_classes = 59
  c.dataset.background = "ignore"
  return config_base.real_data_config(c, SAMPLE_DIR, "train", "val")


def cpu():
  c = config_base.segmentation_cpu_config("pascal_context", 59)
  c.dataset.background = "ignore"
  c.eval_every = 6000
  return config_base.real_data_config(c, SAMPLE_DIR, "train", "val")


def with_background(c):
  """Background as class 0 of 60 (1..59 the classes), scored like the others."""
  c.dataset.background = "class"
  c.task.num_classes = 60
  return c


def get_config(variant: str = ""):
  words = [w.strip() for w in (variant or "").split(",") if w.strip()]
  unknown = sorted(set(words) - set(WORDS))
  if unknown:
    raise ValueError(
      f"Unknown variant word(s) {unknown} of pascal_context.py; use a comma-separated "
      f"subset of {WORDS}, e.g. ':cpu,60'."
    )
  c = cpu() if "cpu" in words else paper()
  return with_background(c) if "60" in words else c
