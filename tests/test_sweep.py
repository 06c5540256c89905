"""pixelnet-sweep: grid expansion, naming, summaries from synthetic runs, and a tiny real
sweep that is resumed (finished points skipped, an unfinished one relaunched)."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest

from pixelnet_jax import sweep, tasks

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TINY = os.path.join(_REPO, "tests", "tiny_config.py")
_PNG = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------
# Pure helpers.


def test_split_values_keeps_bracketed_commas():
  assert sweep.split_values("4,16,64") == ["4", "16", "64"]
  assert sweep.split_values("(32,32),(64,),[1, 2]") == ["(32,32)", "(64,)", "[1, 2]"]
  assert sweep.split_values("'a,b',c") == ["'a,b'", "c"]
  for bad in ("(1,2", "1,,2", ""):
    with pytest.raises(ValueError):
      sweep.split_values(bad)


def test_parse_assignment_normalises_the_key():
  assert sweep.parse_assignment("config.model.head=mlp") == ("model.head", "mlp")
  assert sweep.parse_assignment("--config.seed=3") == ("seed", "3")
  assert sweep.parse_assignment("points_per_image=4") == ("points_per_image", "4")
  assert sweep.parse_assignment("config.x=a=b") == ("x", "a=b")
  for bad in ("config.model.head", "config.=1", "config.a b=1"):
    with pytest.raises(ValueError):
      sweep.parse_assignment(bad)


def test_grid_is_the_product_with_seed_outermost():
  axes = sweep.parse_axes(["config.points_per_image=4,16,64", "config.model.head=linear,mlp"])
  points = sweep.expand_grid(axes, ["0", "1"], [("num_train_steps", "300")])
  assert len(points) == 3 * 2 * 2
  assert len({p.name for p in points}) == len(points)
  assert [p.seed for p in points] == ["0"] * 6 + ["1"] * 6
  first = points[0]
  assert first.name == "points_per_image=4__head=linear__seed=0"
  assert first.flags() == [
    "--config.num_train_steps=300",
    "--config.points_per_image=4",
    "--config.model.head=linear",
    "--config.seed=0",
  ]
  combos = {(dict(p.axes)["points_per_image"], dict(p.axes)["model.head"], p.seed) for p in points}
  assert len(combos) == 12


def test_grid_without_seeds_or_axes():
  (point,) = sweep.expand_grid([], None)
  assert point.name == "base" and point.flags() == []
  points = sweep.expand_grid([("batch_size", ["2", "4"])], None)
  assert [p.name for p in points] == ["batch_size=2", "batch_size=4"]


def test_grid_rejects_conflicting_keys():
  with pytest.raises(ValueError, match="seed"):
    sweep.expand_grid([("seed", ["1", "2"])], ["0"])
  with pytest.raises(ValueError, match="both swept and fixed"):
    sweep.expand_grid([("batch_size", ["2"])], None, [("batch_size", "4")])
  with pytest.raises(ValueError, match="twice"):
    sweep.parse_axes(["config.a=1", "a=2"])


def test_point_names_are_filesystem_safe_and_unique():
  # Same last key part on two axes: the full key disambiguates.
  axes = [("model.dropout", ["0.1"]), ("optimizer.dropout", ["0.2"])]
  (point,) = sweep.expand_grid(axes, None)
  assert point.name == "model.dropout=0.1__optimizer.dropout=0.2"
  # Values that sanitise to the same string get a hash suffix instead of colliding.
  points = sweep.expand_grid([("model.mlp_widths", ["(1,2)", "[1,2]", "(3,)"])], ["0"])
  names = [p.name for p in points]
  assert len(set(names)) == 3
  for name in names:
    assert re.fullmatch(r"[A-Za-z0-9._+=-]+", name), name
    assert name.startswith("mlp_widths=")
  long = sweep.point_name([("model.name", "x" * 500)], "0")
  assert len(long) <= 120 and re.fullmatch(r"[A-Za-z0-9._+=-]+", long)


def test_main_metric_comes_from_the_task_registry():
  for name in tasks.available_tasks():
    task = tasks.get_task(name)
    assert sweep.task_main_metric(name) == (task.main_metric, task.main_metric_mode)
  assert sweep.metric_mode("normals", "median") == "min"
  assert sweep.metric_mode("segmentation", "miou") == "max"
  assert sweep.task_main_metric("no_such_task") == (None, "max")


def test_check_keys_catches_misspelt_keys():
  sweep.check_keys(_TINY, ["points_per_image", "model.head", "seed"])
  sweep.check_keys(_TINY + ":normals", ["task.name"])
  with pytest.raises(ValueError, match="config.model.heda"):
    sweep.check_keys(_TINY, ["model.heda"])


# ----------------------------------------------------------------------------
# Summaries from synthetic workdirs.


def _write_lines(path, lines):
  with open(path, "w") as f:
    for line in lines:
      f.write(json.dumps(line) + "\n")


def test_read_metrics_drops_lines_superseded_by_a_resume(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  _write_lines(
    path,
    [
      {"step": 2, "split": "train", "loss": 3.0},
      {"step": 4, "split": "train", "loss": 2.0},
      {"step": 4, "split": "eval", "miou": 0.1},
      {"step": 6, "split": "train", "loss": 1.5},
      # Killed after step 6, resumed from the step-4 checkpoint.
      {"step": 6, "split": "train", "loss": 1.4},
      {"step": 8, "split": "train", "loss": 1.0},
    ],
  )
  with open(path, "a") as f:
    f.write('{"step": 10, "spl')  # Truncated by a kill.
  kept = sweep.read_metrics(path)
  assert [(l["step"], l["split"]) for l in kept] == [
    (2, "train"),
    (4, "train"),
    (4, "eval"),
    (6, "train"),
    (8, "train"),
  ]
  assert kept[3]["loss"] == 1.4
  assert sweep.read_metrics(str(tmp_path / "missing.jsonl")) == []


def test_eval_wall_seconds_from_steps_per_sec_or_a_time_field():
  lines = [
    {"step": 10, "split": "train", "steps_per_sec": 2.0},  # 5 s
    {"step": 20, "split": "train", "steps_per_sec": 5.0},  # +2 s = 7 s
    {"step": 20, "split": "eval", "miou": 0.3},
    {"step": 25, "split": "eval", "miou": 0.4},  # between lines: next rate
    {"step": 30, "split": "train", "steps_per_sec": 1.0},  # +10 s = 17 s
  ]
  times = sweep.eval_wall_seconds(lines)
  assert times[20] == pytest.approx(7.0)
  assert times[25] == pytest.approx(7.0 + 5 / 1.0)
  lines.append({"step": 30, "split": "eval", "miou": 0.5, "seconds": 42.0})
  assert sweep.eval_wall_seconds(lines)[30] == 42.0
  assert sweep.eval_wall_seconds([{"step": 5, "split": "eval", "miou": 0.1}]) == {}


def _fake_run(
  sweep_dir,
  name,
  axes,
  seed,
  task,
  evals,
  *,
  batch=8,
  points=64,
  steps=100,
  sampling="uniform",
  crop=64,
  done=True,
):
  run_dir = os.path.join(sweep_dir, name)
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, "sweep_point.json"), "w") as f:
    json.dump(
      {
        "name": name,
        "axes": axes,
        "seed": seed,
        "attempts": [{"seconds": 12.5, "returncode": 0, "step": steps}],
      },
      f,
    )
  with open(os.path.join(run_dir, "config.json"), "w") as f:
    json.dump(
      {
        "seed": int(seed),
        "batch_size": batch,
        "points_per_image": points,
        "crop_size": crop,
        "num_train_steps": steps,
        "task": {"name": task, "sampling": sampling},
        "model": {"anything": 1},
      },
      f,
    )
  lines = []
  for step, metrics in evals:
    lines.append({"step": step, "split": "train", "loss": 1.0, "steps_per_sec": 10.0})
    lines.append({"step": step, "split": "eval", **metrics})
  _write_lines(os.path.join(run_dir, "metrics.jsonl"), lines)
  if done:
    with open(os.path.join(run_dir, "sweep_done.json"), "w") as f:
      json.dump({"step": steps, "returncode": 0}, f)
  return run_dir


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == _PNG and os.path.getsize(path) > 1000


def test_summary_rows_metrics_pixels_and_plots(tmp_path):
  sweep_dir = str(tmp_path)
  for seed, offset in (("0", 0.0), ("1", 0.1)):
    for ppi in ("4", "4000"):
      _fake_run(
        sweep_dir,
        f"points_per_image={ppi}__seed={seed}",
        {"points_per_image": ppi},
        seed,
        "segmentation",
        [
          (50, {"miou": 0.2 + offset, "pixel_accuracy": 0.5}),
          (100, {"miou": 0.1 + offset, "pixel_accuracy": 0.6}),
        ],
        points=int(ppi),
      )
  rows = sweep.summarize(sweep_dir)
  assert len(rows) == 4
  table = _read_csv(os.path.join(sweep_dir, "summary.csv"))
  assert len(table) == 4
  columns = list(table[0])
  for column in (
    "point",
    "status",
    "config.points_per_image",
    "seed",
    "steps",
    "wall_seconds",
    "train_pixels",
    "main_metric",
    "final_main",
    "best_main",
    "final_miou",
    "best_miou",
    "final_pixel_accuracy",
    "best_pixel_accuracy",
    "train_seconds",
  ):
    assert column in columns, column
  row = next(r for r in table if r["point"] == "points_per_image=4__seed=1")
  assert row["status"] == "done" and row["seed"] == "1" and row["main_metric"] == "miou"
  assert float(row["final_miou"]) == pytest.approx(0.2)
  assert float(row["best_miou"]) == pytest.approx(0.3)  # max: miou is higher-is-better
  assert int(row["best_main_step"]) == 50
  assert int(row["train_pixels"]) == 100 * 8 * 4
  assert float(row["wall_seconds"]) == 12.5
  assert float(row["train_seconds"]) == pytest.approx(10.0)  # 100 steps at 10 steps/s
  with open(os.path.join(sweep_dir, "summary.json")) as f:
    summary = json.load(f)
  assert len(summary["rows"]) == 4 and summary["columns"] == columns
  for name in ("metric_vs_step.png", "metric_vs_wallclock.png", "final_vs_points_per_image.png"):
    assert name in summary["plots"]
    assert _is_png(os.path.join(sweep_dir, name)), name


def test_summary_min_metrics_dense_pixels_and_unfinished_runs(tmp_path):
  sweep_dir = str(tmp_path)
  _fake_run(
    sweep_dir,
    "a",
    {"model.head": "linear"},
    "0",
    "normals",
    [(10, {"mean": 30.0, "within_11.25": 0.2}), (20, {"mean": 35.0, "within_11.25": 0.1})],
    steps=20,
    sampling="dense",
    crop=[32, 48],
  )
  _fake_run(
    sweep_dir,
    "b",
    {"model.head": "mlp"},
    "0",
    "normals",
    [(10, {"mean": 40.0})],
    steps=20,
    done=False,
  )
  os.makedirs(os.path.join(sweep_dir, "not_a_point"))
  rows = {r["point"]: r for r in sweep.summarize(sweep_dir)}
  assert set(rows) == {"a", "b"}
  a, b = rows["a"], rows["b"]
  assert a["main_metric"] == "mean" and a["main_mode"] == "min"
  assert a["best_main"] == 30.0 and a["final_main"] == 35.0 and a["best_mean"] == 30.0
  assert a["best_within_11.25"] == 0.2  # higher-is-better metric of a min-task
  assert a["train_pixels"] == 20 * 8 * 32 * 48 and a["pixel_count"].startswith("dense")
  assert b["status"] == "incomplete" and b["steps"] == 10
  assert sweep.axis_scale(["linear", "mlp"])[0] == "category"
  assert sweep.axis_scale(["4", "16", "64"])[0] == "linear"
  assert sweep.axis_scale(["4", "64", "1024"])[0] == "log"
  assert _is_png(os.path.join(sweep_dir, "final_vs_model.head.png"))


def test_dry_run_prints_commands_and_writes_nothing(tmp_path):
  workdir = str(tmp_path / "sweep")
  base = [sys.executable, "-m", "pixelnet_jax.sweep", "--config", _TINY, "--workdir", workdir]
  dry = subprocess.run(
    base
    + [
      "--axis",
      "config.model.head=linear,mlp",
      "--seeds",
      "0,1",
      "--set",
      "config.num_train_steps=3",
      "--dry_run",
    ],
    cwd=_REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert dry.returncode == 0, dry.stderr
  commands = [l for l in dry.stdout.splitlines() if "pixelnet_jax.main" in l]
  assert len(commands) == 4
  assert commands[0].startswith("head=linear__seed=0: ")
  assert "--config.model.head=linear --config.seed=0" in commands[0]
  assert "--config.num_train_steps=3" in commands[0]
  assert not os.path.exists(workdir)
  typo = subprocess.run(
    base + ["--axis", "config.model.haed=linear", "--dry_run"],
    cwd=_REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert typo.returncode == 2 and "config.model.haed" in typo.stderr


# ----------------------------------------------------------------------------
# A real sweep of the tiny config, then a resume.


def _sweep(workdir, *extra):
  command = [
    sys.executable,
    "-m",
    "pixelnet_jax.sweep",
    "--config",
    _TINY,
    "--workdir",
    workdir,
    "--axis",
    "config.points_per_image=4,16,x",
    "--set",
    "config.num_train_steps=4",
    "--set",
    "config.eval_every=4",
    "--set",
    "config.checkpoint_every=2",
    "--noecho",
    *extra,
  ]
  # A hang guard, not a time limit: three training processes (each importing JAX and
  # compiling) took over 120 s on 2 cores shared with a training run.
  return subprocess.run(command, cwd=_REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_tiny_sweep_runs_records_failures_and_resumes(tmp_path):
  workdir = str(tmp_path / "sweep")
  first = _sweep(workdir)
  # points_per_image=x is no integer: that point fails (quickly, at flag parsing) and the
  # sweep goes on, then exits 1 listing it.
  assert first.returncode == 1, first.stdout + first.stderr
  assert "points_per_image=x" in first.stderr
  ok = ["points_per_image=4", "points_per_image=16"]
  for name in ok:
    done = json.load(open(os.path.join(workdir, name, "sweep_done.json")))
    assert done["step"] == 4 and done["returncode"] == 0 and done["wall_seconds"] > 0
    assert "step 4/4" in open(os.path.join(workdir, name, "sweep.log")).read()
  failed = json.load(open(os.path.join(workdir, "points_per_image=x", "sweep_failed.json")))
  assert failed["returncode"] != 0 and any("points_per_image" in l for l in failed["log_tail"])

  kept = os.path.join(workdir, ok[0], "sweep_done.json")
  kept_mtime = os.stat(kept).st_mtime_ns
  os.remove(os.path.join(workdir, ok[1], "sweep_done.json"))  # As if it was interrupted.
  second = _sweep(workdir)
  assert second.returncode == 1
  assert f"skipped {ok[0]}" in second.stdout
  assert f"running {ok[1]}" in second.stdout
  assert os.stat(kept).st_mtime_ns == kept_mtime
  assert "skipped" in open(os.path.join(workdir, ok[0], "sweep.log")).read()
  resumed = json.load(open(os.path.join(workdir, ok[1], "sweep_done.json")))
  assert resumed["attempts"] == 2 and resumed["step"] == 4

  table = _read_csv(os.path.join(workdir, "summary.csv"))
  assert [r["point"] for r in table] == ok + ["points_per_image=x"]
  assert [r["status"] for r in table] == ["done", "done", "failed"]
  assert table[0]["config.points_per_image"] == "4" and table[0]["main_metric"] == "miou"
  assert int(table[0]["train_pixels"]) == 4 * 8 * 4
  assert int(table[1]["train_pixels"]) == 4 * 8 * 16
  for row in table[:2]:
    assert 0.0 <= float(row["final_miou"]) <= 1.0 and row["final_miou"] == row["final_main"]
    assert int(row["steps"]) == 4 and float(row["wall_seconds"]) > 0
  for name in ("metric_vs_step.png", "metric_vs_wallclock.png", "final_vs_points_per_image.png"):
    assert _is_png(os.path.join(workdir, name)), name

  rebuilt = subprocess.run(
    [sys.executable, "-m", "pixelnet_jax.sweep", "--workdir", workdir, "--summarize_only"],
    cwd=_REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert rebuilt.returncode == 0, rebuilt.stderr
  assert _read_csv(os.path.join(workdir, "summary.csv")) == table
