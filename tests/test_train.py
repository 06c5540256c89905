"""The training system: learning, exact resume, preemption, devices, config errors."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_config

from pixelnet_jax import config_base, models, tasks, train
from pixelnet_jax import parallel as parallel_lib
from pixelnet_jax.checkpoints import Checkpoints
from pixelnet_jax.data import pipeline, registry
from pixelnet_jax.errors import ConfigError, DataError
from pixelnet_jax.state import create_train_state, host_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "tests", "tiny_config.py")


def _params(summary):
  return jax.tree.leaves(summary["state"].params)


def _assert_trees_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _jsonl(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


# ----------------------------------------------------------------------------
# Learning.


@pytest.mark.slow
@pytest.mark.parametrize("task,steps", [("segmentation", 150), ("normals", 150), ("edges", 150)])
def test_short_run_learns(tmp_path, task, steps):
  c = tiny_config.get_config(task)
  c.model.trunks.vgg.stage_widths = (16, 32, 64)
  c.model.heads.mlp.widths = (64, 64)
  c.dataset.num_examples = {"train": 100000, "val": 8}
  c.num_train_steps = steps
  c.log_every = 10
  c.checkpoint_every = 1000
  c.optimizer.warmup_steps = 10
  summary = train.train_and_evaluate(c, str(tmp_path))
  train_rows = [r for r in _jsonl(tmp_path) if r["split"] == "train"]
  first = np.mean([r["loss"] for r in train_rows[:2]])
  last = np.mean([r["loss"] for r in train_rows[-3:]])
  assert last < 0.8 * first, (first, last)
  metrics = summary["eval"]
  if task == "segmentation":
    # Chance is ~0.1 mean IoU over 10 classes; the majority class scores < 0.05.
    assert metrics["miou"] > 0.2, metrics
  elif task == "normals":
    # A constant prediction (the best single direction) is off by > 40 degrees here.
    assert metrics["median"] < 35.0, metrics
  else:
    # Predicting every pixel as an edge gives F = 2p / (1 + p) with p ~ 0.1 edge pixels.
    assert metrics["f_pixel"] > 0.35, metrics
  assert os.listdir(os.path.join(tmp_path, "pictures"))
  assert os.listdir(os.path.join(tmp_path, "tensorboard"))


def test_bfloat16_computes_in_bf16_with_float32_state_and_learns():
  c = tiny_config.get_config("segmentation")
  c.model.dtype = "bfloat16"
  c.model.heads.mlp.dropout = 0.0
  c.num_train_steps = 100  # the cosine schedule stays near its peak for the 8 steps run
  c.optimizer.learning_rate = 1e-2
  task, crop = config_base.validate_config(c, 1)
  model = models.create_model(c.model, task.num_outputs)
  state = create_train_state(c, model, jax.random.key(0), crop)
  source = registry.get_source("procedural", "train", c.dataset)
  batches = pipeline.make_train_iterator(
    source, 8, crop, 0, label_keys=task.label_keys, label_specs=task.label_specs()
  )
  batch = next(batches)
  batches.close()

  # The forward pass computes in bf16 and returns float32 close to the float32 model's.
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  images = jnp.asarray(batch["image"][:2])
  points = jnp.asarray(np.random.default_rng(0).uniform(0, 63, (2, 50, 2)), jnp.float32)
  text = str(jax.make_jaxpr(lambda v: model.apply(v, images, points))(variables))
  assert "bf16[2,64,64,8] = conv_general_dilated" in text
  out = model.apply(variables, images, points)
  c32 = tiny_config.get_config("segmentation")
  ref = models.create_model(c32.model, task.num_outputs).apply(variables, images, points)
  assert out.dtype == jnp.float32
  assert float(jnp.linalg.norm(out - ref) / jnp.linalg.norm(ref)) < 0.05

  step_model = models.create_model(c.model, task.num_outputs, bn_axis_name=parallel_lib.AXIS)
  step_fn = parallel_lib.ParallelStep(c, step_model, task, parallel_lib.select_devices(c))
  losses = []
  for i in range(8):  # the same images: the loss must come down
    old_params = state.params
    state, metrics = step_fn(state, batch)
    losses.append(float(metrics["loss"]))
    if i == 0:  # The step donates its input state: its buffers are reused.
      assert all(x.is_deleted() for x in jax.tree.leaves(old_params))
  assert np.all(np.isfinite(losses)) and np.mean(losses[-2:]) < 0.9 * losses[0], losses
  trees = {"params": state.params, "opt_state": state.opt_state, "stats": state.batch_stats}
  for name, tree in trees.items():
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert leaves and all(x.dtype == jnp.float32 for x in leaves), name


# ----------------------------------------------------------------------------
# Exact resume and preemption.


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """Six steps in one go (the reference for the resume tests)."""
  c = tiny_config.get_config("segmentation")
  return train.train_and_evaluate(c, str(tmp_path_factory.mktemp("straight")))


def test_resume_is_bit_exact(tmp_path, uninterrupted):
  c = tiny_config.get_config("segmentation")
  c.stop_at_step = 3
  first = train.train_and_evaluate(c, str(tmp_path))
  assert first["step"] == 3
  c.stop_at_step = None
  second = train.train_and_evaluate(c, str(tmp_path))
  assert second["start_step"] == 3 and second["step"] == 6
  _assert_trees_equal(_params(second), _params(uninterrupted))
  _assert_trees_equal(
    jax.tree.leaves(second["state"].batch_stats),
    jax.tree.leaves(uninterrupted["state"].batch_stats),
  )
  assert second["loss"] == uninterrupted["loss"]


def test_rerun_of_finished_workdir_does_nothing(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # A relative workdir, as users type it.
  c = tiny_config.get_config("segmentation")
  c.num_train_steps = 2
  train.train_and_evaluate(c, "runs/rel")
  again = train.train_and_evaluate(c, "runs/rel")
  assert again["start_step"] == 2 and again["step"] == 2
  assert os.listdir(tmp_path / "runs" / "rel" / "checkpoints") == ["2"]


def _launch(workdir, *overrides):
  cmd = [
    sys.executable,
    "-m",
    "pixelnet_jax.main",
    f"--config={TINY}",
    f"--workdir={workdir}",
    *overrides,
  ]
  return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _communicate(proc, timeout):
  """proc.communicate(timeout), killing the child if it hangs (Popen leaves it running)."""
  try:
    return proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.communicate()
    raise


@pytest.mark.slow
def test_sigterm_saves_and_resume_continues_exactly(tmp_path):
  workdir = str(tmp_path / "run")
  proc = _launch(
    workdir,
    "--config.num_train_steps=100000",
    "--config.log_every=1",
    "--config.checkpoint_every=100000",
  )
  deadline = time.time() + 120
  metrics = os.path.join(workdir, "metrics.jsonl")
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and len(_jsonl(workdir)) >= 3:
      break
    time.sleep(0.5)
  assert proc.poll() is None, _communicate(proc, 120)
  proc.send_signal(signal.SIGTERM)
  out, err = _communicate(proc, 120)
  assert proc.returncode == 0, err
  summary = json.loads(out.strip().splitlines()[-1])
  stopped = summary["step"]
  assert summary["preempted"] and stopped >= 3
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == str(stopped)

  resumed = _launch(
    workdir, "--config.num_train_steps=100000", f"--config.stop_at_step={stopped + 2}"
  )
  out, err = _communicate(resumed, 120)
  assert resumed.returncode == 0, err
  assert json.loads(out.strip().splitlines()[-1])["start_step"] == stopped

  c = tiny_config.get_config("segmentation")
  c.num_train_steps = 100000
  c.stop_at_step = stopped + 2
  straight = train.train_and_evaluate(c, str(tmp_path / "straight"))
  abstract = host_state(straight["state"])
  restored = Checkpoints(workdir, 3, "miou", "max").restore(abstract)
  assert int(restored.step) == stopped + 2
  _assert_trees_equal(jax.tree.leaves(restored.params), _params(straight))


def test_nan_loss_stops_with_last_good_checkpoint_intact(tmp_path):
  c = tiny_config.get_config("segmentation")
  c.optimizer.name = "sgd"
  c.optimizer.schedule = "constant"
  c.optimizer.learning_rate = 1e30
  c.checkpoint_every = 1
  c.num_train_steps = 50
  with pytest.raises(FloatingPointError, match="last good checkpoint"):
    train.train_and_evaluate(c, str(tmp_path))
  checkpoints = Checkpoints(str(tmp_path), 3, "miou", "max")
  step = checkpoints.latest_step()
  assert step is not None and step >= 1
  c.optimizer.learning_rate = 1e-3
  template = create_train_state(
    c,
    models.create_model(c.model, tasks.get_task("segmentation", c.task).num_outputs),
    jax.random.key(0),
    (64, 64),
  )
  restored = checkpoints.restore(host_state(template))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(restored.params))


# ----------------------------------------------------------------------------
# Devices: pmap over 8, mesh over 8 and one device agree.


@pytest.mark.slow
def test_pmap_mesh_and_single_device_agree(tmp_path):
  assert jax.device_count() == 8
  results = {}
  for name, parallel, devices in [("one", "pmap", 1), ("pmap", "pmap", 8), ("mesh", "mesh", 8)]:
    c = tiny_config.get_config("segmentation")
    c.model.heads.mlp.dropout = 0.0  # Dropout masks depend on the layout; everything else must not.
    c.num_train_steps = 4
    c.checkpoint_every = 1000
    c.parallel = parallel
    c.num_devices = devices
    results[name] = train.train_and_evaluate(c, str(tmp_path / name))
  # pmap and mesh run the same per-shard function: the same numbers.
  for a, b in zip(_params(results["pmap"]), _params(results["mesh"])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
  # One device vs eight: the same pixels and global statistics; only summation order differs.
  for a, b in zip(_params(results["one"]), _params(results["pmap"])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=2e-5)
  np.testing.assert_allclose(results["one"]["loss"], results["mesh"]["loss"], rtol=1e-3)
  np.testing.assert_allclose(
    results["one"]["eval"]["miou"], results["pmap"]["eval"]["miou"], atol=0.02
  )


# ----------------------------------------------------------------------------
# Config errors: one clear message naming the key, before anything compiles.


@pytest.mark.parametrize(
  "override,key",
  [
    (lambda c: setattr(c.task, "name", "depth"), "config.task.name"),
    (lambda c: setattr(c.dataset, "name", "imagenet"), "config.dataset.name"),
    (lambda c: setattr(c.model, "taps", ("conv1_1", "fc7")), "fc7"),
    (lambda c: setattr(c.model, "taps", ("conv5_3",)), "conv5_3"),
    (lambda c: setattr(c, "points_per_image", 64 * 64 + 1), "config.points_per_image"),
    (lambda c: setattr(c, "batch_size", 7), "config.batch_size"),
    (lambda c: setattr(c, "parallel", "threads"), "config.parallel"),
  ],
)
def test_config_errors_name_the_key(tmp_path, override, key):
  c = tiny_config.get_config("segmentation")
  c.num_devices = 8
  override(c)
  with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
    config_base.validate_config(c, 8)
  with pytest.raises(ConfigError):
    train.train_and_evaluate(c, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_label_out_of_range_is_a_clear_error(tmp_path):
  c = tiny_config.get_config("segmentation")
  c.task.num_classes = 5  # The procedural data has 10 classes.
  with pytest.raises(DataError, match="num_classes"):
    train.train_and_evaluate(c, str(tmp_path))
  assert not os.listdir(tmp_path / "checkpoints")


# ----------------------------------------------------------------------------
# The launcher end to end.


@pytest.mark.slow
def test_launcher_trains_and_evaluates(tmp_path):
  workdir = str(tmp_path / "run")
  proc = _launch(workdir, "--config.num_train_steps=4", "--config.eval_every=4")
  out, err = _communicate(proc, 120)
  assert proc.returncode == 0, err
  assert "step 4/4" in err and "eval at step 4" in err
  for name in ["config.json", "metrics.jsonl", "checkpoints", "best", "tensorboard", "pictures"]:
    assert os.path.exists(os.path.join(workdir, name)), name
  assert any(
    f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(workdir, "tensorboard"))
  )
  assert json.load(open(os.path.join(workdir, "config.json")))["num_train_steps"] == 4

  ev = subprocess.run(
    [
      sys.executable,
      "-c",
      "from pixelnet_jax.main import run_eval; run_eval()",
      f"--config={TINY}",
      f"--workdir={workdir}",
      "--step=4",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert ev.returncode == 0, ev.stderr
  result = json.loads(ev.stdout.strip().splitlines()[-1])
  assert result["step"] == 4 and 0.0 <= result["miou"] <= 1.0

  typo = _launch(workdir, "--config.num_trian_steps=4")
  _, err = _communicate(typo, 120)
  assert typo.returncode != 0 and "num_trian_steps" in err

  bad = _launch(str(tmp_path / "bad"), "--config.batch_size=3", "--config.num_devices=2")
  _, err = _communicate(bad, 120)
  assert bad.returncode == 2 and "config.batch_size" in err
