"""Reliability: Ctrl-C, crash-safe checkpoints, config drift on resume, quiet launchers.

The end-to-end tests run the installed console scripts (``pixelnet-train`` ...) next to
``sys.executable``, as users do; one interrupted training run serves several tests.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import tiny_config

from pixelnet_jax import config_base, evaluate, models, tasks, train
from pixelnet_jax.checkpoints import SLOW_COMMIT_ENV, TMP_SUFFIX, Checkpoints
from pixelnet_jax.data import registry
from pixelnet_jax.errors import CheckpointError, ConfigError
from pixelnet_jax.state import create_train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "tests", "tiny_config.py")
BIN = os.path.dirname(sys.executable)
# What library INFO logs look like on stderr: absl's "I1127 09:57:35.62 ..." prefix, the
# stdlib "INFO:absl:" one, and the orbax line users complained about.
LIBRARY_INFO = re.compile(r"^(I\d{4} \d\d:\d\d|INFO:)|Closing _NonBlockingMetadataStore", re.M)


def _script(name):
  path = os.path.join(BIN, name)
  assert os.path.exists(path), f"{path} is missing: pip install -e . in this environment"
  return path


def _train_cmd(workdir, *overrides):
  return [
    _script("pixelnet-train"),
    f"--config={TINY}",
    f"--workdir={workdir}",
    "--config.num_train_steps=100000",
    "--config.checkpoint_every=3",
    *overrides,
  ]


def _summary(out):
  return json.loads(out.strip().splitlines()[-1])


def _steps(workdir, folder="checkpoints"):
  path = os.path.join(workdir, folder)
  return sorted(int(n) for n in os.listdir(path) if n.isdigit())


def _wait_for(predicate, proc, timeout):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      out, err = proc.communicate()
      pytest.fail(f"exited early with {proc.returncode}:\n{err[-3000:]}")
    if predicate():
      return
    time.sleep(0.2)
  proc.kill()
  pytest.fail(f"timed out after {timeout}s:\n{proc.communicate()[1][-3000:]}")


# ----------------------------------------------------------------------------
# Ctrl-C: save the step reached, exit 0; one run serves several tests.


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
  """``pixelnet-train`` sent SIGINT after its first periodic checkpoint."""
  workdir = str(tmp_path_factory.mktemp("sigint") / "run")
  proc = subprocess.Popen(
    _train_cmd(workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
  )
  try:
    first = os.path.join(workdir, "checkpoints", "3")
    _wait_for(lambda: os.path.isdir(first), proc, timeout=120)
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    out, err = proc.communicate(timeout=60)
    elapsed = time.time() - sent
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.communicate()
  return dict(workdir=workdir, rc=proc.returncode, out=out, err=err, elapsed=elapsed)


def test_ctrl_c_saves_the_step_reached_and_exits_0(interrupted):
  assert interrupted["rc"] == 0, interrupted["err"][-3000:]
  assert interrupted["elapsed"] < 60
  summary = _summary(interrupted["out"])
  assert summary["preempted"] is True and summary["signal"] == "SIGINT"
  step = summary["step"]
  assert step >= 3
  assert step == _steps(interrupted["workdir"])[-1]
  assert "Traceback" not in interrupted["err"]
  assert f"SIGINT: saving step {step}" in interrupted["err"]


def test_training_prints_no_library_info_by_default(interrupted):
  err = interrupted["err"]
  assert "step 2/100000" in err  # The project's own progress lines stay.
  assert not LIBRARY_INFO.search(err), LIBRARY_INFO.search(err).group(0)


@pytest.mark.slow  # Two training subprocesses.
def test_truncated_newest_checkpoint_resumes_from_the_previous_one(interrupted, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(interrupted["workdir"], workdir)
  steps = _steps(workdir)
  newest, previous = steps[-1], steps[-2]
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints", str(newest))):
    for name in files:
      open(os.path.join(root, name), "w").close()
  later = newest + 2
  run = subprocess.run(
    _train_cmd(workdir, f"--config.stop_at_step={later}"),
    capture_output=True,
    text=True,
    timeout=120,
    cwd=REPO,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  summary = _summary(run.stdout)
  assert summary["start_step"] == previous and summary["step"] == later
  assert later in _steps(workdir)
  # Reported: which step, which file; the bad folder is kept aside, not deleted.
  assert f"Checkpoint step {newest} in" in run.stderr
  assert f"{newest}/_CHECKPOINT_METADATA is empty" in run.stderr
  assert os.path.isdir(os.path.join(workdir, "corrupt", "checkpoints", str(newest)))


# ----------------------------------------------------------------------------
# SIGKILL in the middle of an asynchronous save.


@pytest.mark.slow  # Two training subprocesses.
def test_kill_during_async_save_then_same_command_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  slow = dict(os.environ, **{SLOW_COMMIT_ENV: "6:120"})  # Step 6 written, never committed.
  proc = subprocess.Popen(
    _train_cmd(workdir),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=slow,
    cwd=REPO,
  )
  tmp = os.path.join(workdir, "checkpoints", "6" + TMP_SUFFIX)
  try:
    _wait_for(lambda: os.path.isdir(tmp) and 3 in _steps(workdir), proc, timeout=120)
    time.sleep(1.0)  # Let the save write its files into the tmp folder.
  finally:
    proc.kill()  # SIGKILL
    proc.communicate()
  assert os.path.isdir(tmp) and 6 not in _steps(workdir)

  run = subprocess.run(
    _train_cmd(workdir, "--config.stop_at_step=9"),
    capture_output=True,
    text=True,
    timeout=120,
    cwd=REPO,
  )
  assert run.returncode == 0, run.stderr[-3000:]
  summary = _summary(run.stdout)
  assert summary["start_step"] == 3 and summary["step"] == 9
  assert _steps(workdir)[-2:] == [6, 9]
  assert not [n for n in os.listdir(os.path.join(workdir, "checkpoints")) if TMP_SUFFIX in n]


# ----------------------------------------------------------------------------
# Checkpoints in-process, on a small pytree: fallback, errors, best.json.


def _tree(value):
  return {"w": np.full((3,), value, np.float32), "step": np.asarray(value, np.int32)}


def _save(workdir, steps, cleanup=False):
  checkpoints = Checkpoints(str(workdir), 5, "miou", "max", cleanup=cleanup)
  for step in steps:
    checkpoints.save(step, _tree(step))
  checkpoints.close()


def _truncate(folder):
  for root, _, files in os.walk(folder):
    for name in files:
      open(os.path.join(root, name), "w").close()


def test_unreadable_latest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
  _save(tmp_path, [2, 4])
  _truncate(tmp_path / "checkpoints" / "4")
  read_only = Checkpoints(str(tmp_path), 5, "miou", "max")
  restored = read_only.restore(_tree(0))
  read_only.close()
  assert int(restored["step"]) == 2 and restored["w"].tolist() == [2, 2, 2]
  assert "Checkpoint step 4 in" in caplog.text
  assert "4/_CHECKPOINT_METADATA is empty" in caplog.text
  assert os.path.isdir(tmp_path / "checkpoints" / "4")  # Readers move nothing.
  # An explicit step that does not restore is an error naming the step and the file.
  with pytest.raises(CheckpointError, match=r"step 4 in .*checkpoints.*_CHECKPOINT_METADATA"):
    Checkpoints(str(tmp_path), 5, "miou", "max").restore(_tree(0), step=4)


def test_writer_moves_the_bad_step_aside_and_can_save_it_again(tmp_path):
  _save(tmp_path, [2, 4])
  os.remove(tmp_path / "checkpoints" / "4" / "_CHECKPOINT_METADATA")  # An unfinished copy.
  os.makedirs(tmp_path / "checkpoints" / ("6" + TMP_SUFFIX))  # A killed save's leftover.
  writer = Checkpoints(str(tmp_path), 5, "miou", "max", cleanup=True)
  assert int(writer.restore(_tree(0))["step"]) == 2
  assert os.path.isdir(tmp_path / "corrupt" / "checkpoints" / "4")
  writer.save(4, _tree(44))
  writer.close()
  assert not os.path.exists(tmp_path / "checkpoints" / ("6" + TMP_SUFFIX))
  again = Checkpoints(str(tmp_path), 5, "miou", "max")
  assert int(again.restore(_tree(0))["step"]) == 44
  again.close()


def test_no_readable_checkpoint_is_an_error_naming_the_folder(tmp_path):
  _save(tmp_path, [2])
  _truncate(tmp_path / "checkpoints" / "2")
  checkpoints = Checkpoints(str(tmp_path), 5, "miou", "max", cleanup=True)
  folder = re.escape(os.path.join(str(tmp_path), "checkpoints"))
  with pytest.raises(CheckpointError, match=f"No readable checkpoint in {folder}: step 2"):
    checkpoints.restore(_tree(0))
  checkpoints.close()
  assert os.path.isdir(tmp_path / "checkpoints" / "2")  # Nothing good: nothing moved.


def test_best_json_follows_the_best_checkpoint(tmp_path, caplog):
  checkpoints = Checkpoints(str(tmp_path), 5, "miou", "max")
  assert checkpoints.maybe_save_best(2, _tree(2), {"miou": 0.5})
  assert not checkpoints.maybe_save_best(4, _tree(4), {"miou": 0.4})
  assert checkpoints.maybe_save_best(6, _tree(6), {"miou": 0.7})
  checkpoints.close()
  best_dir = tmp_path / "best"
  assert json.load(open(best_dir / "best.json")) == {"step": 6, "metric": "miou", "value": 0.7}
  assert sorted(os.listdir(best_dir)) == ["6", "best.json"]  # No temp file left.
  reopened = Checkpoints(str(tmp_path), 5, "miou", "max")
  assert reopened.best_value == 0.7
  assert int(reopened.restore(_tree(0), best=True)["step"]) == 6
  reopened.close()

  # A best.json naming a step that is not under best/ (a kill between the two) is ignored.
  with open(best_dir / "best.json", "w") as f:
    json.dump({"step": 8, "metric": "miou", "value": 0.9}, f)
  caplog.clear()
  stale = Checkpoints(str(tmp_path), 5, "miou", "max")
  assert stale.best_value is None and "names step 8" in caplog.text
  assert stale.maybe_save_best(10, _tree(10), {"miou": 0.6})  # 0.6 < 0.9, still saved.
  stale.close()


# ----------------------------------------------------------------------------
# Config drift on resume.


def test_config_drift_lists_state_changes_and_ignores_the_schedule():
  old = json.loads(tiny_config.get_config().to_json_best_effort())
  same = tiny_config.get_config()
  assert config_base.config_drift(old, same) == []  # Tuples saved as lists compare equal.
  for key, value in [
    ("num_train_steps", 7),
    ("stop_at_step", 5),
    ("log_every", 1),
    ("eval_every", 3),
    ("checkpoint_every", 9),
    ("keep_checkpoints", 1),
    ("data_workers", 2),
    ("data_threads", 1),
  ]:
    setattr(same, key, value)
  same.eval.num_pictures = 0
  same.dataset.num_eval_examples = 2
  same.dataset.eval_split = "train"
  assert config_base.config_drift(old, same) == []

  changed = tiny_config.get_config()
  changed.model.heads.mlp.widths = (64, 32)
  changed.batch_size = 16
  changed.crop_size = 32
  changed.optimizer.name = "sgd"
  changed.dataset.image_size = 32
  assert config_base.config_drift(old, changed) == [
    ("batch_size", 8, 16),
    ("crop_size", 64, 32),
    ("dataset.image_size", 64, 32),
    ("model.heads.mlp.widths", [32, 32], [64, 32]),
    ("optimizer.name", "adam", "sgd"),
  ]
  del old["points_per_image"]
  assert config_base.config_drift(old, same) == [("points_per_image", "<absent>", 64)]


def _snapshot(root):
  return {
    os.path.join(d, n): open(os.path.join(d, n), "rb").read()
    for d, _, names in os.walk(root)
    for n in names
  }


def test_resume_with_a_changed_model_is_refused_before_anything(tmp_path):
  c = tiny_config.get_config()
  workdir = str(tmp_path / "run")
  os.makedirs(os.path.join(workdir, "checkpoints", "2"))
  train.write_config(c, workdir)
  before = _snapshot(workdir)
  c.model.heads.mlp.widths = (64, 64)
  c.task.num_classes = 12
  c.num_train_steps = 99  # Allowed, so not listed.
  with pytest.raises(ConfigError) as e:
    train.train_and_evaluate(c, workdir)
  message = str(e.value)
  assert "model.heads.mlp.widths: [32, 32] -> [64, 64]" in message
  assert "task.num_classes: 10 -> 12" in message
  assert "num_train_steps" not in message.split("may change on resume")[0]
  assert _snapshot(workdir) == before
  # Schedule-only changes pass the check.
  c.model.heads.mlp.widths = (32, 32)
  c.task.num_classes = 10
  train.check_config_drift(c, workdir)


# ----------------------------------------------------------------------------
# Launchers: --help, aliases, verbosity, a second Ctrl-C.


MULTIHOST_FLAGS = ["coordinator_address", "num_processes", "process_id"]


def test_each_launcher_help_lists_its_flags():
  expected = {
    "pixelnet-train": ["config", "workdir", "verbosity", *MULTIHOST_FLAGS],
    "pixelnet-eval": ["config", "workdir", "step", "best", "verbosity", *MULTIHOST_FLAGS],
    "pixelnet-predict": [
      "config",
      "workdir",
      "step",
      "best",
      "out_dir",
      "split",
      "scales",
      "save_npy",
    ],
  }
  procs = {
    name: subprocess.Popen(
      [_script(name), "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for name in expected
  }
  outputs = {}
  for name, proc in procs.items():
    out = outputs[name] = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    for flag in expected[name]:
      # "--flag: description" or "--[no]flag: description".
      assert re.search(rf"--(\[no\])?{flag}: \S", out), (name, flag, out)
  assert "also --out-dir" in outputs["pixelnet-predict"]


def test_predict_accepts_out_dash_dir_and_verbosity_shows_library_logs(tmp_path):
  empty = str(tmp_path / "empty")
  common = [f"--config={TINY}:edges", f"--workdir={empty}"]
  procs = [
    subprocess.Popen(
      [_script("pixelnet-predict"), *common, "--out-dir", str(tmp_path / "png")],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    ),
    subprocess.Popen(
      [_script("pixelnet-eval"), *common, "-v", "1"],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    ),
  ]
  (_, predict_err), (_, eval_err) = [p.communicate(timeout=120) for p in procs]
  # The flag parsed; the run got as far as looking for a checkpoint.
  assert procs[0].returncode == 2 and "No checkpoint in" in predict_err, predict_err
  assert not LIBRARY_INFO.search(predict_err)
  assert procs[1].returncode == 2 and "No checkpoint in" in eval_err
  assert LIBRARY_INFO.search(eval_err), eval_err[-2000:]


def test_second_signal_exits_at_once_without_a_traceback():
  code = (
    "import os, signal, time\n"
    "from pixelnet_jax.train import Preemption\n"
    "with Preemption() as p:\n"
    "  os.kill(os.getpid(), signal.SIGINT)\n"
    "  assert p.requested and p.signal_name == 'SIGINT'\n"
    "  print('first', flush=True)\n"
    "  os.kill(os.getpid(), signal.SIGINT)\n"
    "  time.sleep(30)\n"
    "print('not reached')\n"
  )
  run = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
  )
  assert run.stdout.strip() == "first", run.stderr
  assert run.returncode == 128 + signal.SIGINT
  assert "SIGINT again" in run.stderr and "Traceback" not in run.stderr


def test_a_signal_cuts_an_eval_short(tmp_path):
  c = tiny_config.get_config()
  task = tasks.get_task("segmentation", c.task)
  model = models.create_model(c.model, task.num_outputs)
  source = registry.get_source(c.dataset.name, c.dataset.eval_split, c.dataset)

  class Writer:
    rows = []

    def write(self, *row):
      self.rows.append(row)

    def image(self, *picture):
      pass

  calls = []

  def should_stop():
    calls.append(1)
    return len(calls) > 1  # Stop before the second batch.

  evaluator = evaluate.Evaluator(c, model, task, source, str(tmp_path), Writer())
  state = create_train_state(c, model, jax.random.key(0), (64, 64))
  assert evaluator.run(state, 5, should_stop=should_stop) is None
  assert len(calls) == 2 and Writer.rows == []  # No metrics of a partial eval.


def test_resume_drops_metric_rows_logged_after_the_last_checkpoint(tmp_path):
  """A run killed after logging past its last checkpoint: the resumed run rewrites those
  steps, and metrics.jsonl keeps each (step, split) once, in order."""
  c = tiny_config.get_config("segmentation")
  c.log_every, c.checkpoint_every, c.num_train_steps, c.stop_at_step = 1, 2, 6, 4
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(c, workdir)
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path, "a") as f:  # What the killed attempt logged after checkpoint 4.
    for step in (5, 6, 7):
      f.write(json.dumps({"step": step, "split": "train", "loss": -1.0}) + "\n")
    f.write('{"step": 8, "spl')  # and a line the kill cut short
  c.stop_at_step = 6
  assert train.train_and_evaluate(c, workdir)["start_step"] == 4
  rows = [json.loads(line) for line in open(path)]
  train_steps = [r["step"] for r in rows if r["split"] == "train"]
  assert train_steps == [1, 2, 3, 4, 5, 6]
  assert all(r["loss"] > 0 for r in rows if r["split"] == "train")
  # How long the host waited for the device (bounded run-ahead) is logged as a fraction.
  assert all(0.0 <= r["host_wait_fraction"] <= 1.0 for r in rows if r["split"] == "train")
