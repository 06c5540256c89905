"""Segmentation on the built-in procedural dataset, sized for a 2-core CPU (~5 min).

A small VGG (4 stages, 16-128 channels) at 64^2, 8 images x 256 pixels per step,
Adam with cosine decay (SGD as in the paper needs far more steps than a CPU
demo allows).
"""

from pixelnet_jax.config_base import paper_config


def get_config():
  c = paper_config("segmentation")
  c.dataset.image_size = 64
  c.dataset.num_examples = {"train": 100000, "val": 64}
  c.task.num_classes = 10
  c.model.trunk = "vgg_small"
  c.model.mlp_widths = (256, 256)
  c.model.dropout = 0.1
  c.model.head_init_std = 0.01
  c.model.dense_chunk_size = 4096
  c.batch_size = 8
  c.points_per_image = 256
  c.crop_size = 64
  c.augment.gain_range = None  # Colour is part of the class identity here.
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 50
  c.num_train_steps = 1200
  c.log_every = 50
  c.eval_every = 400
  c.checkpoint_every = 200
  return c
