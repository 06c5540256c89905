"""Experiment configs are composed here from the registered components' defaults.

``experiments/configs/*.py`` call ``paper_config()`` (or ``procedural_cpu_config()``) and
override a few fields. Where every key is defined:

- ``config.dataset``: ``data.registry.COMMON_DEFAULTS`` + the dataset entry's defaults
  (``DATASETS.defaults(name)``, in the dataset's module);
- ``config.task``: the task entry's defaults (``tasks/<task>.py``, ``default_config``);
- ``config.model``: ``models.default_model_config()`` with ``trunks.<name>`` and
  ``heads.<name>`` from each registered trunk and head;
- ``config.optimizer``: ``optimizers.COMMON_DEFAULTS`` + ``optimizer.<name>`` per
  registered optimizer;
- the rest (batch, pixels, crops, schedule of the loop, eval): ``paper_config`` below.

The launcher locks the config, so ``--config.x=y`` on an unknown key fails loudly, and
``validate_config`` checks values before anything compiles.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import os

import ml_collections
from ml_collections import config_dict

from pixelnet_jax import models, optimizers, tasks
from pixelnet_jax.data import pipeline, registry
from pixelnet_jax.errors import ConfigError

PARALLEL = ("pmap", "mesh")


def dataset_config(name: str = "procedural") -> ml_collections.ConfigDict:
  """``config.dataset`` for dataset ``name``: the shared fields plus the entry's own."""
  # A deep copy: the defaults hold placeholders (FieldReferences), which would otherwise
  # be shared by every config built in this process (setting one would set them all).
  c = ml_collections.ConfigDict(dict(name=name, **copy.deepcopy(registry.COMMON_DEFAULTS)))
  c.update(registry.DATASETS.defaults(name))
  return c


def paper_config(
  task: str = "segmentation", dataset: str = "procedural"
) -> ml_collections.ConfigDict:
  """VGG-16 + MLP 4096^2 at 224^2, 5 images x 2,000 pixels, SGD as in PixelNet."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = dataset_config(dataset)
  c.task = tasks.default_task_config(task)
  c.model = models.default_model_config()

  c.batch_size = 5  # images per step, over all devices
  c.points_per_image = 2000
  c.crop_size = 224
  c.augment = ml_collections.ConfigDict()
  c.augment.flip = True
  c.augment.gain_range = (0.8, 1.3)
  # (low, high): each training image is resized by a factor drawn from U[low, high]
  # before the crop (multi-scale training); None keeps the stored size.
  c.augment.scale_range = config_dict.placeholder(tuple)
  # Random quarter turns before the crop (with flip: all 8 symmetries of the square), for
  # data with no preferred orientation; off for scenes with an up (roads, rooms).
  c.augment.rotate = False
  c.data_threads = 2
  c.data_workers = 0

  c.optimizer = optimizers.default_optimizer_config()

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
  # Images are resized by this factor for dense prediction and the outputs resized back,
  # so metrics are always at the labels' native resolution (e.g. 0.5 after training on
  # half-size images).
  c.eval.scale = 1.0
  return c


def _check_augment_range(config, key: str) -> None:
  """``config.augment.<key>``: None or () (off), or (low, high) with 0 < low <= high."""
  value = config.augment.get(key)
  if not value:
    return
  if tuple(value) == (None,):  # ml_collections parses --config.augment.<key>=None so.
    raise ConfigError(
      f"config.augment.{key} is (None,): a tuple field given 'None' on the command line "
      f"becomes a one-element tuple. Turn it off with --config.augment.{key}='()'."
    )
  try:
    pipeline.check_scale_range(value, key)
  except (TypeError, ValueError) as e:
    raise ConfigError(
      f"config.augment.{key}: {e} E.g. --config.augment.{key}='(0.5, 1.0)', or '()' for off."
    ) from e


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """``get_config()`` of a config file, ``path[:arg]`` as the launchers take it (``arg``
  is passed to ``get_config``); for scripts that build a config without absl flags."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"No config file {path!r}.")
  module_spec = importlib.util.spec_from_file_location("_pixelnet_config_file", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def procedural_cpu_config(task: str) -> ml_collections.ConfigDict:
  """The paper config shrunk for a 2-core CPU on the built-in procedural data.

  A small VGG (4 stages, 16-128 channels, no fc) at 64^2, 8 images x 256 pixels
  per step, MLP 256^2, Adam with warm-up and cosine decay (SGD as in the paper
  needs far more steps than a CPU run allows).
  """
  c = paper_config(task)
  c.dataset.image_size = 64
  c.dataset.num_examples = {"train": 100000, "val": 64}
  c.model.trunk = "vgg_small"
  c.model.heads.mlp.widths = (256, 256)
  c.model.heads.mlp.dropout = 0.1
  c.model.heads.mlp.init_std = 0.01
  c.model.heads.linear.init_std = 0.01
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


# Environment variable naming the folder that holds the real datasets' extracted trees
# (the tests' samples use the same one); real-data configs default manual_dir to it.
DATA_ENV = "PIXELNET_TEST_DATA"


def manual_dir_from_env(subdir: str) -> str | None:
  """``$PIXELNET_TEST_DATA/<subdir>`` when the variable is set, else None (unset)."""
  root = os.environ.get(DATA_ENV)
  return os.path.join(root, subdir) if root else None


def real_data_config(
  c: ml_collections.ConfigDict, sample_dir: str, train_split: str, eval_split: str
) -> ml_collections.ConfigDict:
  """Sets a real dataset's splits and ``manual_dir`` (``manual_dir_from_env(sample_dir)``)
  on ``c``; without ``$PIXELNET_TEST_DATA`` manual_dir stays unset, and the run stops
  before compiling with the dataset's download instructions."""
  c.dataset.train_split = train_split
  c.dataset.eval_split = eval_split
  manual_dir = manual_dir_from_env(sample_dir)
  if manual_dir:
    c.dataset.manual_dir = manual_dir
  return c


def real_data_cpu_config(task: str, dataset: str) -> ml_collections.ConfigDict:
  """The paper config shrunk for a 2-core CPU on a real dataset read from its folder.

  A compact VGG from scratch (5 stages, 32-128 channels, 2 convs each, no fc, BatchNorm)
  tapped at the end of every stage (stride 1 to 16), MLP 256^2 with dropout, 4 images x
  1,000 pixels per step at 160^2 crops, Adam with warm-up, cosine decay and gradient
  clipping (SGD from scratch needs far more steps than a CPU run allows). ``manual_dir``
  stays unset (see ``manual_dir_from_env``): the run then stops before compiling with the
  dataset's download instructions.
  """
  c = paper_config(task, dataset=dataset)
  c.dataset.backend = "folder"
  c.model.trunk = "vgg"
  trunk = c.model.trunks.vgg
  trunk.stage_widths = (32, 64, 96, 128, 128)
  trunk.convs_per_stage = (2, 2, 2, 2, 2)
  trunk.fc = False
  trunk.init_std = 0.05
  c.model.taps = ("conv1_2", "conv2_2", "conv3_2", "conv4_2", "conv5_2")
  c.model.heads.mlp.widths = (256, 256)
  c.model.heads.mlp.dropout = 0.1
  c.model.heads.mlp.init_std = 0.01
  c.model.dense_chunk_size = 16384
  c.batch_size = 4
  c.points_per_image = 1000
  c.crop_size = 160
  c.augment.gain_range = (0.8, 1.25)
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 100
  c.optimizer.grad_clip_norm = 5.0
  c.num_train_steps = 2000
  c.log_every = 50
  c.eval_every = 1000
  c.checkpoint_every = 250
  c.eval.num_pictures = 4
  return c


def segmentation_cpu_config(dataset: str, num_classes: int) -> ml_collections.ConfigDict:
  """``real_data_cpu_config`` with the recipe of the CamVid ``:cpu`` result: class-
  stratified sampling, each image resized by U[0.5, 0.8] before a 176^2 crop, scored at
  ``eval.scale`` 0.65 (the middle of that range), 6,000 steps."""
  c = real_data_cpu_config("segmentation", dataset)
  c.task.num_classes = num_classes
  c.task.sampling = "class_stratified"
  c.augment.scale_range = (0.5, 0.8)
  c.crop_size = 176  # Inside the smallest rescaled 360x480 image (180x240).
  c.eval.scale = 0.65
  c.num_train_steps = 6000
  c.checkpoint_every = 500
  return c


def _check_registered(registry_, name: str):
  """A ConfigError naming the config key and the registered names, for an unknown name."""
  try:
    registry_.entry(name)
  except ValueError as e:
    raise ConfigError(str(e)) from e


def validate_config(config: ml_collections.ConfigDict, num_devices: int):
  """Builds the task and model from the config and checks the step's shapes.

  Every name is checked against its registry; every message names the key and the fix.

  Returns:
    (task, crop (h, w)).
  """
  _check_registered(registry.DATASETS, config.dataset.name)
  known = (
    set(registry.COMMON_DEFAULTS) | {"name"} | set(registry.DATASETS.defaults(config.dataset.name))
  )
  unknown = sorted(set(config.dataset.keys()) - known)
  if unknown:
    raise ConfigError(
      f"config.dataset has fields {unknown} that dataset "
      f"{config.dataset.name!r} does not read; its fields: {sorted(known)}."
    )
  _check_registered(tasks.TASKS, config.task.name)
  try:
    task = tasks.get_task(config.task.name, config.task)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  try:
    models.create_model(config.model, task.num_outputs)
  except ValueError as e:
    raise ConfigError(f"config.model: {e}") from e
  try:
    crop = pipeline.as_pair(config.crop_size, "config.crop_size")
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if task.dense:
    limit = tasks.base.DENSE_MAX_CROP_PIXELS
    if crop[0] * crop[1] > limit:
      raise ConfigError(
        f"config.task.sampling='dense' trains on every pixel of each crop; "
        f"config.crop_size {crop[0]}x{crop[1]} = {crop[0] * crop[1]} pixels is above the "
        f"limit of {limit} pixels per crop (512x512). Lower config.crop_size."
      )
  elif int(config.points_per_image) < 1:
    raise ConfigError(f"config.points_per_image must be >= 1, got {config.points_per_image}.")
  elif int(config.points_per_image) > crop[0] * crop[1]:
    raise ConfigError(
      f"config.points_per_image={config.points_per_image} is more than the "
      f"{crop[0]}x{crop[1]}={crop[0] * crop[1]} pixels of a crop (config.crop_size); "
      "lower it or raise the crop size."
    )
  if int(config.batch_size) < 1 or int(config.batch_size) % num_devices:
    raise ConfigError(
      f"config.batch_size={config.batch_size} must be a positive multiple of the "
      f"{num_devices} devices in use; change it or set config.num_devices."
    )
  for key in ("scale_range", "gain_range"):
    _check_augment_range(config, key)
  if not float(config.eval.get("scale", 1.0)) > 0:
    raise ConfigError(f"config.eval.scale must be > 0, got {config.eval.scale}.")
  if config.parallel not in PARALLEL:
    raise ConfigError(f"config.parallel must be one of {PARALLEL}, got {config.parallel!r}.")
  _check_registered(optimizers.OPTIMIZERS, config.optimizer.name)
  _check_registered(optimizers.SCHEDULES, config.optimizer.schedule)
  try:
    optimizers.OPTIMIZERS.config(
      config.optimizer.name,
      config.optimizer.get(config.optimizer.name),
      where=f"config.optimizer.{config.optimizer.name}",
    )
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if int(config.num_train_steps) < 1:
    raise ConfigError(f"config.num_train_steps must be >= 1, got {config.num_train_steps}.")
  return task, crop


# Keys (and key prefixes: "eval" covers eval.*) that may change when a work directory is
# resumed: the schedule of the loop, evaluation, data loading and the device layout. Any
# other difference (model.*, task.*, dataset.*, crop_size, points_per_image, batch_size,
# optimizer.*, augment.*, seed, ...) changes the state or the data it was trained on, so
# resuming with it is refused (``config_drift``).
RESUME_MAY_CHANGE = (
  "num_train_steps",
  "stop_at_step",
  "log_every",
  "eval_every",
  "checkpoint_every",
  "keep_checkpoints",
  "eval",
  "data_workers",
  "data_threads",
  "num_devices",
  "parallel",
  "dataset.num_eval_examples",
  "dataset.eval_split",
)

# Fields added after work directories were first written, with the value that reproduces
# what a run did before the field existed (fnmatch patterns of the dotted key). A saved
# config without the key resumes when the run keeps that value; any other value is drift.
ADDED_FIELDS = {
  "task.hard_oversample": 3,
  "task.hard_fraction": 0.75,
  "model.heads.linear.normalize": True,
  "model.trunks.*.batch_norm": True,
}

_ABSENT = "<absent>"


def _added_default(key: str):
  for pattern, value in ADDED_FIELDS.items():
    if fnmatch.fnmatchcase(key, pattern):
      return value
  return _ABSENT


def _flatten(tree, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) and value:
      flat.update(_flatten(value, name + "."))
    else:
      flat[name] = value
  return flat


def _normalise(value):
  """JSON's view of a value: tuples are lists, ConfigDicts are dicts (as in config.json)."""
  if isinstance(value, ml_collections.ConfigDict):
    return json.loads(value.to_json_best_effort())  # Exactly what write_config saves.
  return json.loads(json.dumps(value, default=str))


def config_drift(old, new) -> list[tuple[str, object, object]]:
  """The keys whose change forbids a resume: ``[(key, old value, new value)]``, sorted.

  ``old`` is the saved ``config.json`` (a dict), ``new`` the run's config (a ConfigDict
  or dict); values are compared as JSON sees them (tuples == lists). Keys listed in
  ``RESUME_MAY_CHANGE`` (or under one of them) are ignored; a key present on one side only
  counts as a difference, shown as ``<absent>``, unless the other side is None (a field
  added later with an unset default) or the value ``ADDED_FIELDS`` gives for the key.
  """
  old, new = _flatten(_normalise(old)), _flatten(_normalise(new))

  def allowed(key):
    return any(key == p or key.startswith(p + ".") for p in RESUME_MAY_CHANGE)

  def same(key, a, b):  # A key added since (default None or as listed) matches its absence.
    if a == b:
      return True
    if a == _ABSENT or b == _ABSENT:
      present = b if a == _ABSENT else a
      return present is None or (_added_default(key) != _ABSENT and present == _added_default(key))
    return False

  return [
    (key, old.get(key, _ABSENT), new.get(key, _ABSENT))
    for key in sorted(set(old) | set(new))
    if not allowed(key) and not same(key, old.get(key, _ABSENT), new.get(key, _ABSENT))
  ]


def format_drift(drift, saved: str) -> str:
  """``config_drift``'s result as the message of the ConfigError that refuses a resume."""
  lines = "\n".join(f"  {key}: {json.dumps(a)} -> {json.dumps(b)}" for key, a, b in drift)
  return (
    f"The config differs from the one this work directory was trained with ({saved}) in "
    f"{len(drift)} key(s) that change the model, task, data or optimizer:\n{lines}\n"
    "Resuming would mix two experiments, so nothing was changed. Use a new --workdir, or "
    "set these keys back; only the schedule and eval keys may change on resume: "
    f"{', '.join(RESUME_MAY_CHANGE)}."
  )
