"""PixelNet semantic segmentation on CamVid (11 classes, SegNet's 367/101/233 split).

Variants (``--config experiments/configs/camvid_segmentation.py[:variant]``):

- (none): the paper's accelerator setting (``config_base.paper_config``: VGG-16 with
  BatchNorm, 224^2 crops, 5 images x 2,000 pixels, MLP 4096^2, SGD), trained from scratch
  on train, scored on val at native 360x480.
- ``:cpu``: from scratch in about an hour on 2 CPU cores (the result and its commands are
  in ``experiments/results/camvid_segmentation.md``).
- ``:quick``: the same recipe, shorter and on smaller images, about 12 minutes.

Data: SegNet's layout, ``<manual_dir>/CamVid/{train,val,test}{,annot}`` and the ``.txt``
lists, read directly (``backend='folder'``); ``manual_dir`` defaults to
``$PIXELNET_TEST_DATA/camvid`` and must otherwise be given with
``--config.dataset.manual_dir=/path/holding/CamVid`` (a missing tree stops the run with
download instructions). Void (11) is the ignore label.

Choices of the CPU variants, and why:
- Scale: CamVid's objects are large at 360x480, so training on images resized by about
  0.5 (``augment.scale_range``, with jitter) sees far more scene per FLOP; evaluation
  resizes the image by ``eval.scale`` and the logits back, so metrics are at native size.
- Trunk: a compact VGG (``config_base.real_data_cpu_config``) tapped at every stage,
  stride 1 to 16: fine taps place boundaries, the stride-16 tap sees whole cars and
  buildings.
- Sampling: class-stratified with shares proportional to the square root of each class's
  pixel frequency on train (measured on every third train image). Uniform sampling
  starves poles, signs and bicyclists (0.3-1.2% of pixels); equal shares over-predict
  them and cost the large classes IoU; the square root sits between the two.
"""

from pixelnet_jax import config_base

# sqrt(pixel frequency) of sky, building, pole, road, sidewalk, tree, sign, fence, car,
# pedestrian, bicyclist on CamVid train, normalised.
SQRT_FREQUENCY_SHARES = (
  0.1541,
  0.1817,
  0.0375,
  0.2107,
  0.0792,
  0.1160,
  0.0404,
  0.0397,
  0.0905,
  0.0310,
  0.0192,
)

VARIANTS = ("", "cpu", "quick")


def paper():
  c = config_base.paper_config("segmentation", dataset="camvid")
  c.task.num_classes = 11
  c.num_train_steps = 20000
  c.eval_every = 2000
  return config_base.real_data_config(c, "camvid", "train", "val")


def cpu():
  c = config_base.segmentation_cpu_config("camvid", 11)
  c.task.class_fractions = SQRT_FREQUENCY_SHARES
  c.optimizer.learning_rate = 2e-3
  c.num_train_steps = 8000
  c.eval_every = 2000
  return config_base.real_data_config(c, "camvid", "train", "val")


def quick():
  c = cpu()
  c.augment.scale_range = (0.45, 0.55)
  c.crop_size = 160
  c.eval.scale = 0.5
  c.num_train_steps = 2500
  c.eval_every = 2500
  return c


def get_config(variant: str = ""):
  builders = {"": paper, "cpu": cpu, "quick": quick}
  if variant not in builders:
    raise ValueError(f"Unknown variant {variant!r} of camvid_segmentation.py; one of {VARIANTS}.")
  return builders[variant]()
