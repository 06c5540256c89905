"""The paper-sized training config that experiment configs start from.

``experiments/configs/*.py`` call ``paper_config()`` and override a few fields,
so every key a launcher accepts is defined here once (``--config.x=y`` on an
unknown key fails loudly because the launcher locks the config).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from pixelnet_jax import models, tasks


def paper_config(task: str = "segmentation") -> ml_collections.ConfigDict:
  """VGG-16 + MLP 4096^2 at 224^2, 5 images x 2,000 pixels, SGD as in PixelNet."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "procedural"  # see pixelnet_jax.data.registry.known_sources()
  c.dataset.train_split = "train"
  c.dataset.eval_split = "val"
  # Source-specific fields (pixelnet_jax.data.registry documents which each reads).
  c.dataset.image_size = 224
  c.dataset.num_examples = ml_collections.ConfigDict({"train": 10000, "val": 100})
  c.dataset.seed = 0
  c.dataset.data_dir = config_dict.placeholder(str)
  c.dataset.manual_dir = config_dict.placeholder(str)
  c.dataset.backend = "tfds"
  c.dataset.num_eval_examples = config_dict.placeholder(int)  # None: the whole split

  c.task = tasks.default_task_config(task)
  c.model = models.default_model_config()

  c.batch_size = 5  # images per step, over all devices
  c.points_per_image = 2000
  c.crop_size = 224
  c.augment = ml_collections.ConfigDict()
  c.augment.flip = True
  c.augment.gain_range = (0.8, 1.3)
  c.data_threads = 2
  c.data_workers = 0

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"  # 'sgd' (momentum) | 'adam' | 'adamw'
  c.optimizer.learning_rate = 1e-3
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4  # kernels only: not biases, not BatchNorm
  c.optimizer.schedule = "step"  # 'step' | 'cosine' | 'constant'
  c.optimizer.decay_fractions = (0.6, 0.85)  # 'step': x decay_factor at these fractions
  c.optimizer.decay_factor = 0.1
  c.optimizer.warmup_steps = 0
  c.optimizer.grad_clip_norm = 0.0  # 0 disables

  c.num_train_steps = 60000
  # Stop (checkpointed) at this step without changing the schedule, e.g. to split
  # a run over time-limited jobs; re-running the same workdir continues it.
  c.stop_at_step = config_dict.placeholder(int)
  c.parallel = "pmap"  # 'pmap' | 'mesh' (jit + shard_map over a NamedSharding mesh)
  c.num_devices = config_dict.placeholder(int)  # None: all local devices

  c.log_every = 50
  c.eval_every = 5000
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 1
  c.eval.num_pictures = 4
  c.eval.chunk_size = config_dict.placeholder(int)  # None: model.dense_chunk_size
  return c


def procedural_cpu_config(task: str) -> ml_collections.ConfigDict:
  """The paper config shrunk for a 2-core CPU on the built-in procedural data.

  A small VGG (4 stages, 16-128 channels, no fc) at 64^2, 8 images x 256 pixels
  per step, MLP 256^2, Adam with warm-up and cosine decay (SGD as in the paper
  needs far more steps than a CPU run allows). About 4 steps/s on 2 cores.
  """
  c = paper_config(task)
  c.dataset.image_size = 64
  c.dataset.num_examples = {"train": 100000, "val": 64}
  c.model.trunk = "vgg_small"
  c.model.mlp_widths = (256, 256)
  c.model.dropout = 0.1
  c.model.head_init_std = 0.01
  c.model.dense_chunk_size = 4096
  c.batch_size = 8
  c.points_per_image = 256
  c.crop_size = 64
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
