"""Multi-process training on ``jax.distributed``, on localhost with the real launcher.

Two ``pixelnet-train`` processes with 2 CPU devices each (gloo collectives) must train
exactly as one process with 4 devices: the same images on device i (each process reads
its share of the global batch), the same pixels (keyed by the global image index), the
same dropout masks (keyed by the device's index on the axis), so the same losses and
parameters up to the summation order of the all-reduce. The two-process run is stopped by
a SIGTERM to one process (both stop after the same step, with a checkpoint), resumed on
the mesh path, and evaluated sharded over the processes.
"""

import importlib.util
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from pixelnet_jax import distributed, predict, train
from pixelnet_jax.checkpoints import Checkpoints
from pixelnet_jax.data import pipeline, registry
from pixelnet_jax.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "experiments", "configs", "procedural_segmentation.py")
BIN = os.path.dirname(sys.executable)
NUM_STEPS = 1000  # The schedule's length; every run stops well before it.

# The README job's config, made small enough for a loaded 2-core CPU. Dropout stays on:
# its masks are keyed by the device's index, the same in both layouts.
SMALL = {
  "model.trunk": "vgg",
  "model.trunks.vgg.stage_widths": (8, 16, 32),
  "model.trunks.vgg.convs_per_stage": (1, 1, 1),
  "model.trunks.vgg.fc": False,
  "model.heads.mlp.widths": (32, 32),
  "model.dense_chunk_size": 1024,
  "dataset.num_examples.val": 3,  # Uneven over 2 processes: 2 batches and 1.
  "points_per_image": 64,
  "num_train_steps": NUM_STEPS,
  "optimizer.warmup_steps": 0,
  "log_every": 1,
  "checkpoint_every": NUM_STEPS,
  "eval_every": NUM_STEPS,
  "eval.num_pictures": 0,
}


def _flags(overrides: dict) -> list[str]:
  return [f"--config.{k}={v}" for k, v in overrides.items()]


def _config(overrides: dict):
  spec = importlib.util.spec_from_file_location("procedural_segmentation", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()  # What the launcher loads.
  for key, value in overrides.items():
    *path, leaf = key.split(".")
    node = c
    for name in path:
      node = node[name]
    node[leaf] = value
  return c


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(
  workdir: str, overrides: dict, num_processes: int = 2, script: str = "pixelnet-train", *args
) -> list[subprocess.Popen]:
  """``script`` (a launcher) as ``num_processes`` processes of 2 CPU devices each."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  port = _free_port()
  procs = []
  for i in range(num_processes):
    # Process 1 spells the flags with hyphens (the launchers' aliases).
    sep = "_" if i == 0 else "-"
    cmd = [
      os.path.join(BIN, script),
      f"--config={CONFIG}",
      f"--workdir={workdir}",
      f"--coordinator{sep}address=localhost:{port}",
      f"--num{sep}processes={num_processes}",
      f"--process{sep}id={i}",
      *_flags({**SMALL, **overrides}),
      *args,
    ]
    procs.append(
      subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env
      )
    )
  return procs


def _finish(procs, timeout: float) -> list[dict]:
  """Each process's summary (the launcher's last stdout line); fails on an error."""
  results = []
  deadline = time.time() + timeout
  try:
    for i, proc in enumerate(procs):
      out, err = proc.communicate(timeout=max(1.0, deadline - time.time()))
      assert proc.returncode == 0, f"process {i} exited {proc.returncode}:\n{err[-4000:]}"
      results.append(json.loads(out.strip().splitlines()[-1]))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  return results


def _rows(workdir: str, split: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == split]


class _Clock:
  """Wall and CPU seconds (this process and its children) per phase, for the log."""

  def __init__(self):
    self.rows, self._last = [], self._now()

  @staticmethod
  def _now():
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return time.time(), cpu

  def lap(self, name: str):
    now = self._now()
    self.rows.append((name, now[0] - self._last[0], now[1] - self._last[1]))
    self._last = now

  def report(self) -> str:
    return "\n".join(f"{name}: {wall:.0f} s wall, {cpu:.0f} s CPU" for name, wall, cpu in self.rows)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A two-process run (pmap) stopped by SIGTERM to process 1 at step s, resumed on the
  mesh to s + 2 with an eval there; and one process of 4 devices trained to s + 2."""
  root = tmp_path_factory.mktemp("multihost")
  workdir = str(root / "two_processes")
  clock = _Clock()
  procs = _start(workdir, {"parallel": "pmap"})
  metrics = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 240
  while time.time() < deadline and not (os.path.exists(metrics) and _rows(workdir, "train")):
    if any(p.poll() is not None for p in procs):
      break  # Exited early: _finish reports why.
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGTERM)
  stopped = _finish(procs, 120)
  clock.lap("2 processes, pmap, to the SIGTERM")

  stop = stopped[0]["step"]
  end = stop + 2
  resumed = _finish(
    _start(workdir, {"parallel": "mesh", "stop_at_step": end, "eval_every": end}), 120
  )
  clock.lap("2 processes, mesh, resumed + eval")

  c = _config({**SMALL, "parallel": "pmap", "stop_at_step": end, "eval_every": end})
  c.num_devices = 4  # Of the 8 host devices of tests/conftest.py: one process, 4 devices.
  single = train.train_and_evaluate(c, str(root / "one_process"))
  clock.lap("1 process of 4 devices (in this process)")
  print(clock.report())
  return dict(
    workdir=workdir,
    stopped=stopped,
    resumed=resumed,
    single=single,
    single_workdir=str(root / "one_process"),
    end=end,
  )


def test_sigterm_to_one_process_stops_both_at_the_same_step(runs):
  first, second = runs["stopped"]
  assert first["preempted"] and second["preempted"]
  assert first["step"] == second["step"] >= 1
  assert second["signal"] == "SIGTERM"
  steps = sorted(int(n) for n in os.listdir(os.path.join(runs["workdir"], "checkpoints")))
  assert first["step"] in steps


def test_two_processes_resume_on_the_mesh(runs):
  for summary in runs["resumed"]:
    assert summary["start_step"] == runs["stopped"][0]["step"]
    assert summary["step"] == runs["end"] and not summary["preempted"]


def test_two_processes_train_as_one_process_of_four_devices(runs):
  multi = _rows(runs["workdir"], "train")
  single = _rows(runs["single_workdir"], "train")
  # Process 0 alone writes: one row per step.
  assert [r["step"] for r in multi] == list(range(1, runs["end"] + 1))
  assert [r["step"] for r in single] == [r["step"] for r in multi]
  # Equal up to the order of the sums of the all-reduce (gloo across processes).
  np.testing.assert_allclose(
    [r["loss"] for r in multi], [r["loss"] for r in single], rtol=1e-5, atol=0
  )
  abstract = runs["single"]["state"]
  restored = Checkpoints(runs["workdir"], 3, "miou", "max").restore(abstract)
  assert int(restored.step) == runs["end"]
  single_params = dict(jax.tree_util.tree_flatten_with_path(abstract.params)[0])
  for path, value in jax.tree_util.tree_flatten_with_path(restored.params)[0]:
    name = jax.tree_util.keystr(path)
    # A trunk conv's bias is cancelled by the BatchNorm after it: its gradient is rounding
    # noise, which Adam (eps 1e-8) turns into steps of ~lr * noise / eps, so it matches
    # only to that size. Every other parameter matches to float32 rounding.
    pre_norm_bias = name.startswith("['trunk']") and name.endswith("['bias']") and "_bn" not in name
    np.testing.assert_allclose(
      np.asarray(value),
      np.asarray(single_params[path]),
      rtol=1e-4,
      atol=5e-5 if pre_norm_bias else 1e-6,
      err_msg=name,
    )


def test_eval_sharded_over_processes_matches_one_process(runs):
  multi, single = _rows(runs["workdir"], "eval"), _rows(runs["single_workdir"], "eval")
  assert [r["step"] for r in multi] == [runs["end"]] == [r["step"] for r in single]
  for key in ("miou", "pixel_accuracy", "mean_accuracy"):
    np.testing.assert_allclose(multi[0][key], single[0][key], atol=1e-6)
  for summary in runs["resumed"]:  # Every process got the merged metrics.
    np.testing.assert_allclose(summary["eval"]["miou"], multi[0]["miou"], atol=1e-6)
  best = json.load(open(os.path.join(runs["workdir"], "best", "best.json")))
  assert best["step"] == runs["end"]


def test_eval_launcher_on_two_processes(runs):
  """``pixelnet-eval`` with the same flags: restored by both, sharded, written by one."""
  end = runs["end"]
  results = _finish(_start(runs["workdir"], {}, 2, "pixelnet-eval", f"--step={end}"), 120)
  expected = _rows(runs["single_workdir"], "eval")[0]
  for result in results:
    assert result["step"] == end
    np.testing.assert_allclose(result["miou"], expected["miou"], atol=1e-6)
  with open(os.path.join(runs["workdir"], f"eval_step{end}.json")) as f:
    np.testing.assert_allclose(json.load(f)["miou"], expected["miou"], atol=1e-6)


def test_predict_launcher_on_two_processes_writes_each_image_once(runs, tmp_path):
  """``pixelnet-predict`` with the same flags: each process writes its share of the
  images; together they are exactly one process's files."""
  end, two = runs["end"], tmp_path / "two"
  procs = _start(runs["workdir"], {}, 2, "pixelnet-predict", f"--step={end}", f"--out_dir={two}")
  try:
    for i, proc in enumerate(procs):
      _, err = proc.communicate(timeout=120)
      assert proc.returncode == 0, f"process {i} exited {proc.returncode}:\n{err[-4000:]}"
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  one = predict.write_predictions(_config(SMALL), runs["workdir"], str(tmp_path / "one"), step=end)
  written = sorted(
    os.path.relpath(os.path.join(folder, name), two)
    for folder, _, names in os.walk(two)
    for name in names
  )
  assert written == sorted(os.path.relpath(f, tmp_path / "one") for f in one["files"])
  assert len(written) == SMALL["dataset.num_examples.val"]
  for name in written:
    with Image.open(two / name) as a, Image.open(tmp_path / "one" / name) as b:
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


# ----------------------------------------------------------------------------
# The pieces, in this process.


def test_each_process_reads_its_share_of_the_global_batch():
  c = _config(SMALL)
  source = registry.get_source("procedural", "train", c.dataset)

  def batches(process_index, process_count):
    it = pipeline.make_train_iterator(
      source,
      8,
      32,
      seed=5,
      start_step=3,
      label_keys=("label",),
      process_index=process_index,
      process_count=process_count,
    )
    out = [next(it) for _ in range(2)]
    it.close()
    return out

  whole = batches(0, 1)
  for count in (2, 4):
    shares = [batches(p, count) for p in range(count)]
    for k in range(2):
      for key, value in whole[k].items():
        np.testing.assert_array_equal(value, np.concatenate([s[k][key] for s in shares]))
  with pytest.raises(ValueError, match="multiple of the 3 processes"):
    pipeline.make_train_iterator(source, 8, 32, seed=0, process_index=0, process_count=3)


def test_initialize_needs_all_three_flags_or_a_cluster(monkeypatch):
  for name in ("SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri"):
    monkeypatch.delenv(name, raising=False)
  if distributed.detected_cluster() is not None:
    pytest.skip("running inside a cluster that JAX detects")
  assert distributed.initialize() is False  # Nothing given: one process.
  assert distributed.initialize(num_processes=1) is False
  with pytest.raises(ConfigError, match="--process_id"):
    distributed.initialize("localhost:1234", 2)
  with pytest.raises(ConfigError, match=r"process_id must be in \[0, 2\)"):
    distributed.initialize("localhost:1234", 2, 2)
  assert not distributed.is_multiprocess() and distributed.is_main()
  assert distributed.StopVote().update(True) is True
  assert distributed.any_process(False) is False
  assert distributed.allgather_object({"a": 1}) == [{"a": 1}]
