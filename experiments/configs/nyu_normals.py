"""PixelNet surface normals on NYU Depth v2 (795 train / 654 test frames): train -> test.

Variants (``--config experiments/configs/nyu_normals.py[:variant]``):

- (none): the paper's accelerator setting (``config_base.paper_config``: VGG-16 with
  BatchNorm, 224^2 crops, 5 images x 2,000 pixels sampled uniformly over valid pixels,
  MLP 4096^2, SGD as in ``default.py``), read through the TFDS builder; scored on the
  654 test frames at native resolution (mean / median angular error, % within 11.25,
  22.5 and 30 degrees). The paper also trains on NYU's raw video frames; the splits here
  are the 795 labelled ones.
- ``:cpu``: sized for 2 CPU cores (``config_base.real_data_cpu_config``), read from the
  extracted folder (``backend='folder'``). On the 10 sample frames (2 train, 8 test) it
  shows that loss and test angular error fall (``experiments/results/nyu_normals_cpu.md``);
  that is not an accuracy result.

Data: MTAN's pre-processed ``.npy`` layout (``{train,val}/{image,normal}/N.npy``, 288x384;
its ``val/`` is NYUv2's test split) or the PNG layout (``{train,test}/{img,norm}``); see
``pixelnet_jax/data/nyuv2.py`` for both and for the axis convention (x right, y down, z
towards the camera; a horizontal flip negates x). ``manual_dir`` defaults to
``$PIXELNET_TEST_DATA/nyuv2_mtan`` (the 10 sample frames) and must otherwise be given
with ``--config.dataset.manual_dir=...``.

Choices, and why:
- Taps read before the ReLU (``model.tap_activation='pre'``), the project's normals
  setting (``procedural_normals.py``): a normal is a signed quantity, and pre-ReLU
  features keep the sign information a ReLU would cut.
- ``:cpu``: no scale augmentation: MTAN's frames are already 0.6x of the Kinect's
  640x480, and normals of a resized image are the same vectors, so scale jitter only
  shrinks what a 160^2 crop sees. Uniform sampling over valid pixels as in the paper:
  normals have no rare class to protect. 2,000 steps x 4 crops is about 10 epochs of
  train; test is scored every 1,000 steps at native 288x384.
"""

from pixelnet_jax import config_base

# Folder under $PIXELNET_TEST_DATA holding the MTAN layout (the 10 sample frames).
SAMPLE_DIR = "nyuv2_mtan"
VARIANTS = ("", "cpu")


def _nyu(c):
  c.model.tap_activation = "pre"
  return config_base.real_data_config(c, SAMPLE_DIR, "train", "test")


def paper():
  return _nyu(config_base.paper_config("normals", dataset="nyuv2_normals"))


def cpu():
  # real_data_cpu_config as it is: uniform sampling, 2,000 steps, test every 1,000.
  return _nyu(config_base.real_data_cpu_config("normals", "nyuv2_normals"))


def get_config(variant: str = ""):
  builders = {"": paper, "cpu": cpu}
  if variant not in builders:
    raise ValueError(f"Unknown variant {variant!r} of nyu_normals.py; one of {VARIANTS}.")
  return builders[variant]()
