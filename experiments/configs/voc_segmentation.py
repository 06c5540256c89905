"""PixelNet semantic segmentation on PASCAL VOC 2012 (21 classes): train_aug -> val.

Variants (``--config experiments/configs/voc_segmentation.py[:variant]``):

- (none): the paper's accelerator setting (``config_base.paper_config``: VGG-16 with
  BatchNorm, 224^2 crops, 5 images x 2,000 pixels sampled uniformly over labelled pixels,
  MLP 4096^2, SGD 1e-3 with momentum 0.9, step decay and weight decay 5e-4 as in
  ``default.py``), read through the TFDS builder (array_record, built once from the
  manual directory). Trained on ``train_aug`` (VOC train + SBD train/val minus every VOC
  val id: the usual 10,582 images) and scored on VOC ``val`` (1,449 images) at native
  resolution, the paper's protocol. The paper starts from an ImageNet VGG-16; this
  framework trains from scratch, so its numbers are not the paper's.
- ``:cpu``: the same data sized for 2 CPU cores (``config_base.segmentation_cpu_config``,
  the CamVid ``:cpu`` recipe), read from the extracted folders (``backend='folder'``).
  Not run here: the full VOC and SBD archives are not on this machine (only a one-image
  sample).

Data: ``<manual_dir>/VOCdevkit/VOC2012/...`` and SBD's ``benchmark_RELEASE/dataset/`` (or
``dataset/``) beside it; see ``pixelnet_jax/data/voc2012.py``. ``manual_dir`` defaults to
``$PIXELNET_TEST_DATA/voc2012_sample`` (the test samples: one val image, no SBD, so
``train_aug`` is empty there) and must otherwise be given with
``--config.dataset.manual_dir=/path/holding/VOCdevkit``; a missing tree stops the run
before compiling, with download instructions. 255 (the void band) is the ignore label.

Choices of ``:cpu``, and why:
- Scale: VOC objects fill much of a ~500x375 image, so training on images resized by
  0.5-0.8 (``augment.scale_range``) shows a 176^2 crop more of each object per FLOP; the
  evaluation resizes by ``eval.scale`` = 0.65 (the middle of that range) and the logits
  back, so metrics stay at native resolution.
- Sampling: class-stratified, equal shares over the classes present in each image.
  Background covers about 70% of VOC's labelled pixels; uniform sampling (the paper's,
  which had ImageNet features to lean on) spends most of a small CPU budget on it.
- Steps: 6,000 x 4 images (about 2.3 epochs of train_aug), the budget of
  ``camvid_segmentation.py:cpu``; val is scored at the end only (1,449 dense images).
"""

from pixelnet_jax import config_base

# Folder under $PIXELNET_TEST_DATA holding VOCdevkit/ (the shared samples).
SAMPLE_DIR = "voc2012_sample"
VARIANTS = ("", "cpu")


def paper():
  c = config_base.paper_config("segmentation", dataset="voc2012")
  c.task.num_classes = 21
  return config_base.real_data_config(c, SAMPLE_DIR, "train_aug", "val")


def cpu():
  c = config_base.segmentation_cpu_config("voc2012", 21)
  c.eval_every = 6000
  return config_base.real_data_config(c, SAMPLE_DIR, "train_aug", "val")


def get_config(variant: str = ""):
  builders = {"": paper, "cpu": cpu}
  if variant not in builders:
    raise ValueError(f"Unknown variant {variant!r} of voc_segmentation.py; one of {VARIANTS}.")
  return builders[variant]()
