"""A tiny training config for tests: a 3-stage, 8-32 channel VGG at 64^2.

Also a config file for the launcher: ``--config tests/tiny_config.py:edges``.
"""

from pixelnet_jax.config_base import procedural_cpu_config


def get_config(task: str = "segmentation"):
  c = procedural_cpu_config(task or "segmentation")
  if c.task.name == "segmentation":
    c.task.num_classes = 10
  c.model.trunk = "vgg"
  c.model.trunks.vgg.stage_widths = (8, 16, 32)
  c.model.trunks.vgg.convs_per_stage = (1, 1, 1)
  c.model.trunks.vgg.fc = False
  c.model.heads.mlp.widths = (32, 32)
  c.model.dense_chunk_size = 1024
  c.dataset.num_examples = {"train": 64, "val": 4}
  c.batch_size = 8
  c.points_per_image = 64
  c.num_train_steps = 6
  c.optimizer.warmup_steps = 0
  c.log_every = 2
  c.eval_every = 1000
  c.checkpoint_every = 2
  c.num_devices = 1
  c.eval.num_pictures = 1
  return c
