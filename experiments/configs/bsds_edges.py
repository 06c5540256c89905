"""PixelNet edges trained from scratch on BSDS500 train (200 images), sized for a 2-core CPU.

The result, its wall time and the exact commands are in
``experiments/results/bsds_edges.md``.

Data: the extracted ``BSR/`` folder is read directly (``backend='folder'``, no TFDS
build). ``config.dataset.manual_dir`` is the folder holding ``BSR/``; it defaults
to ``$PIXELNET_TEST_DATA`` and must otherwise be given with
``--config.dataset.manual_dir=/path/holding/BSR`` (the run then stops at once
with download instructions if it is missing).

Choices, and why:
- Trunk: a compact VGG (4 stages, 32-128 channels, 2 convs each, no fc) with a
  tap at the end of every stage, so the hypercolumn mixes stride-1 detail
  (where edges are localised) with stride-8 context (which edges matter).
- Labels: 'soft' fusion, target = fraction of annotators marking the pixel, so
  boundaries most people agree on score higher than idiosyncratic ones, which
  is what the benchmark's precision rewards; no pixel is thrown away.
- Sampling: stratified, 40% of the points on pixels any annotator marked
  (about 6% of a BSDS image) and 60% elsewhere; with that share the loss needs
  no further class weighting (``class_balance='none'``).
- Adam with warm-up and cosine decay: SGD from scratch needs far more steps than
  45 CPU minutes allow. 8,500 steps filled about 40 of those minutes on the 2 idle cores
  of the headline run (3.98 steps/s); a slower 2-core machine ran 2.3-2.5 steps/s, so
  there the same minutes hold about 6,000 steps.
- What the sampling analysis (``experiments/results/sampling_analysis.md``, section f)
  found on 500-step runs, scored with the BSDS benchmark: edge-stratified sampling beats
  uniform, the MLP head beats the linear one, and 1,000 pixels per image beat 256 and 64;
  scale augmentation and a fifth (stride-16) stage made no difference beyond the seed
  spread, so they are left out, and the extra training time goes to more steps.
  Scale augmentation (0.7-1.4, edge labels shrunk by max) also failed at full length:
  9,800 steps with it, in 44 minutes, scored val ODS 0.723 against this config's 0.724.
  Consensus labels ('threshold' 0.5 with ``ignore_uncertain``) and random quarter turns
  (``augment.rotate``) scored below this config in 2,000-step probes (0.697 and 0.692
  against 0.699), the turns far below it in a full-length run's proxy, so both stay off.
  So did Adam 2e-3 (0.697) and 8 images per step: 112² crops at the same trunk cost
  (0.694), or 160² crops for 1,000 steps in the same training time (0.692); a positive
  fraction of 0.25 was level (0.700).
- In-training evaluation is the cheap pixel-exact proxy on 10 val images; the
  BSDS benchmark runs afterwards on the PNGs of ``pixelnet_jax.predict``.
"""

import os

from pixelnet_jax.config_base import paper_config

# Environment variable naming the folder that holds BSR/ (as for the tests).
DATA_ENV = "PIXELNET_TEST_DATA"


def get_config():
  c = paper_config("edges", dataset="bsds500")
  c.dataset.backend = "folder"
  c.dataset.train_split = "train"
  c.dataset.eval_split = "val"
  if os.environ.get(DATA_ENV):
    c.dataset.manual_dir = os.environ[DATA_ENV]
  # Else it stays an unset placeholder: training stops before compiling with
  # "needs config.manual_dir (the folder holding BSR/)" and download instructions.
  c.dataset.num_eval_examples = 10  # The in-training proxy only; see the docstring.

  c.task.sampling = "stratified"
  c.task.label_fusion = "soft"
  c.task.positive_fraction = 0.4
  c.task.class_balance = "none"

  c.model.trunk = "vgg"
  trunk = c.model.trunks.vgg
  trunk.stage_widths = (32, 64, 96, 128)
  trunk.convs_per_stage = (2, 2, 2, 2)
  trunk.fc = False
  trunk.init_std = 0.05
  c.model.taps = ("conv1_2", "conv2_2", "conv3_2", "conv4_2")
  c.model.heads.mlp.widths = (256, 256)
  c.model.heads.mlp.dropout = 0.1
  c.model.heads.mlp.init_std = 0.01
  c.model.dense_chunk_size = 16384

  c.batch_size = 4
  c.points_per_image = 1000
  c.crop_size = 160
  c.augment.flip = True
  c.augment.gain_range = (0.8, 1.25)

  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 100
  c.optimizer.grad_clip_norm = 5.0

  c.num_train_steps = 8500
  c.log_every = 50
  c.eval_every = 1700
  c.checkpoint_every = 500
  c.eval.num_pictures = 2
  return c
