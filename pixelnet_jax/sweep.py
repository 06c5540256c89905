"""``pixelnet-sweep``: a grid of ``pixelnet-train`` runs, one after another, plus a summary.

    pixelnet-sweep --config experiments/configs/procedural_segmentation.py --workdir SWEEP \
        --axis config.points_per_image=4,16,64 --axis config.model.head=linear,mlp \
        --seeds 0,1 [--set config.num_train_steps=300 ...] [--dry_run | --summarize_only]

The grid is the product of the seeds and the ``--axis`` values (seed outermost, so every
point has one run before any has two). Each point trains in a subprocess
(``python -m pixelnet_jax.main``, the same launcher as ``pixelnet-train``) with the base
config and its overrides as ``--config.key=value``, in ``SWEEP/<point>`` (e.g.
``points_per_image=4__head=linear__seed=0``); its output is teed to ``SWEEP/<point>/sweep.log``.
Values are split at top-level commas only, so ``--axis config.model.mlp_widths=(32,32),(64,)``
has two values.

Re-running the same command resumes the sweep: a point whose run reached its final step
has a ``sweep_done.json`` (written by the sweep after the subprocess exits cleanly at that
step) and is skipped; any other point is launched again in its sub-workdir, where
``pixelnet-train`` resumes from its own checkpoints. A failing point is recorded
(``sweep_failed.json``: return code, last log lines) and the sweep goes on; it exits 1 at the
end, listing the failures. SIGTERM or Ctrl-C reaches the running point, which checkpoints;
the sweep then writes the summary and exits 3 (2 is a bad command line or config key).

At the end (or with ``--summarize_only``) the sweep writes ``summary.csv`` and
``summary.json`` (one row per sub-workdir: overrides, seed, steps, wall seconds, training
pixels seen, final and best of every eval metric, the main metric) and PNG plots: the main
metric against step and against training wall-clock for all runs, and the final main metric
against each swept value (mean over seeds, min-max error bars; categorical x for
non-numeric values, log x for positive values spanning more than two decades). The main
metric is a ``main_metric`` field of the metrics.jsonl lines if they carry one, else the
``metric`` of the run's best/best.json, else the registered task's ``main_metric``.

Wall-clock of an eval line: an elapsed-time field of the line itself if it has one
(``wall_seconds``, ``seconds``, ``elapsed_seconds``), else it is rebuilt from the train lines,
whose ``steps_per_sec`` ``train.py`` measures over the wall time since the previous train
line (steps, checkpoints and evals alike): the sum of ``(step - previous step) /
steps_per_sec`` up to the eval's step, extrapolated at the next line's rate between lines.
After a resume the interval back to the restored checkpoint is counted from the previous
logged step, which overstates it by at most one logging interval.

Training pixels seen = steps x batch_size x points_per_image (the sampled pixels that get a
loss), read from the run's ``config.json``. If ``config.task.sampling`` is ``'dense'`` every
pixel of the crop is counted instead (steps x batch_size x crop pixels), an upper bound as
invalid pixels are not subtracted; the ``pixel_count`` column says which rule was used.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from absl import app, flags

from pixelnet_jax import cli, config_base, tasks

# Fields of a metrics.jsonl line that hold elapsed seconds since the run started.
_ELAPSED_KEYS = ("wall_seconds", "seconds", "elapsed_seconds")
_NON_METRIC_KEYS = frozenset(("step", "split", "main_metric", "main_metric_mode") + _ELAPSED_KEYS)
_POINT_FILE = "sweep_point.json"
_DONE_FILE = "sweep_done.json"
_FAILED_FILE = "sweep_failed.json"
_LOG_FILE = "sweep.log"
_MAX_NAME = 120


def _task_class(task: str | None):
  """The registered task class (its ``main_metric``, ``main_metric_mode`` and
  ``lower_is_better``), or None for a name no task has."""
  return tasks.TASKS.get(task) if task and task in tasks.TASKS else None


def task_main_metric(task: str | None) -> tuple[str | None, str]:
  """(main metric, 'max'|'min') of a task name, from the task registry."""
  cls = _task_class(task)
  if cls is None:
    return None, "max"
  return cls.main_metric, cls.main_metric_mode


def metric_mode(task: str | None, metric: str) -> str:
  """'min' for the task's error metrics (``Task.lower_is_better``), else 'max'."""
  cls = _task_class(task)
  return "min" if cls is not None and metric in cls.lower_is_better else "max"


# ----------------------------------------------------------------------------
# The grid.


@dataclasses.dataclass(frozen=True)
class Point:
  """One run of the grid: its sub-workdir name and every override it passes."""

  name: str
  axes: tuple[tuple[str, str], ...]  # (key without 'config.', raw value), in axis order
  seed: str | None
  fixed: tuple[tuple[str, str], ...]  # --set overrides

  @property
  def overrides(self) -> list[tuple[str, str]]:
    seed = [("seed", self.seed)] if self.seed is not None else []
    return list(self.fixed) + list(self.axes) + seed

  def flags(self) -> list[str]:
    return [f"--config.{k}={v}" for k, v in self.overrides]


def split_values(text: str) -> list[str]:
  """Splits at commas outside brackets and quotes: '(1,2),(3,)' -> ['(1,2)', '(3,)']."""
  values, depth, quote, current = [], 0, None, []
  for ch in text:
    if quote:
      quote = None if ch == quote else quote
    elif ch in "\"'":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "," and depth == 0:
      values.append("".join(current).strip())
      current = []
      continue
    current.append(ch)
  values.append("".join(current).strip())
  if depth != 0 or quote:
    raise ValueError(f"Unbalanced brackets or quotes in {text!r}.")
  if any(v == "" for v in values):
    raise ValueError(f"Empty value in {text!r}.")
  return values


def parse_assignment(text: str) -> tuple[str, str]:
  """'config.model.head=mlp' (or '--config.…', or without 'config.') -> ('model.head', 'mlp')."""
  key, sep, value = text.strip().lstrip("-").partition("=")
  key = key.strip()
  if key.startswith("config."):
    key = key[len("config.") :]
  if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
    raise ValueError(f"Expected config.KEY=VALUE, got {text!r}.")
  return key, value.strip()


def parse_axes(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
  axes, seen = [], set()
  for spec in specs:
    key, values = parse_assignment(spec)
    if key in seen:
      raise ValueError(f"Axis config.{key} is given twice.")
    seen.add(key)
    axes.append((key, split_values(values)))
  return axes


def safe_component(text: str) -> str:
  """A value as a file-name piece: letters, digits and ._+- kept, runs of others -> '_'."""
  return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "_"


def axis_labels(keys: Sequence[str]) -> dict[str, str]:
  """Short names for point names: the key's last part unless two axes share it."""
  last = [k.rsplit(".", 1)[-1] for k in keys]
  return {k: (short if last.count(short) == 1 else k) for k, short in zip(keys, last)}


def point_name(
  axes: Sequence[tuple[str, str]], seed: str | None, labels: dict[str, str] | None = None
) -> str:
  labels = labels or axis_labels([k for k, _ in axes])
  parts = [f"{labels[k]}={safe_component(v)}" for k, v in axes]
  if seed is not None:
    parts.append(f"seed={safe_component(seed)}")
  name = "__".join(parts) or "base"
  if len(name) > _MAX_NAME:
    name = name[: _MAX_NAME - 9] + "-" + _digest(name)
  return name


def _digest(text: str) -> str:
  return hashlib.sha1(text.encode()).hexdigest()[:8]


def expand_grid(
  axes: Sequence[tuple[str, Sequence[str]]],
  seeds: Sequence[str] | None,
  fixed: Sequence[tuple[str, str]] = (),
) -> list[Point]:
  """Every (seed, axis values...) combination, seed outermost, then axes in order."""
  keys = [k for k, _ in axes]
  fixed_keys = [k for k, _ in fixed]
  if seeds and "seed" in keys + fixed_keys:
    raise ValueError("config.seed is set by --seeds; do not also put it in --axis/--set.")
  clash = set(keys) & set(fixed_keys)
  if clash:
    raise ValueError(f"Keys both swept and fixed: {sorted(clash)}.")
  labels = axis_labels(keys)
  points = []
  for seed in list(seeds) if seeds else [None]:
    for values in itertools.product(*[list(v) for _, v in axes]):
      point_axes = tuple(zip(keys, values))
      points.append(Point(point_name(point_axes, seed, labels), point_axes, seed, tuple(fixed)))
  names = [p.name for p in points]
  if len(set(names)) != len(names):
    # Values that differ only in unsafe characters ('(1,2)' vs '[1,2]'): disambiguate all.
    points = [dataclasses.replace(p, name=f"{p.name}-{_digest(repr(p.overrides))}") for p in points]
  return points


def train_command(config_path: str, workdir: str, point: Point) -> list[str]:
  return [
    sys.executable,
    "-m",
    "pixelnet_jax.main",
    "--config",
    config_path,
    "--workdir",
    workdir,
    *point.flags(),
  ]


def check_keys(config_path: str, keys: Iterable[str]) -> None:
  """Loads the base config (as config_flags does) so a misspelt key fails before any run."""
  config = config_base.load_config_file(config_path)
  for key in keys:
    node = config
    for part in key.split("."):
      try:
        node = node[part]
      except (KeyError, TypeError, AttributeError):
        raise ValueError(f"config.{key} is not a key of {config_path}.") from None


# ----------------------------------------------------------------------------
# Running.


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _write_json(path: str, data: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=2, default=str)
  os.replace(tmp, path)


def target_step(run_config: dict | None) -> int | None:
  """The step a run stops at: num_train_steps, or stop_at_step if that is earlier."""
  if not run_config or run_config.get("num_train_steps") is None:
    return None
  steps = int(run_config["num_train_steps"])
  stop = run_config.get("stop_at_step")
  return min(steps, int(stop)) if stop is not None else steps


class _Stop:
  """SIGTERM to the sweep: forward it to the running point (which checkpoints), then stop."""

  def __init__(self):
    self.requested = False
    self.process: subprocess.Popen | None = None

  def handle(self, signum, frame):
    del frame
    self.requested = True
    if self.process is not None and self.process.poll() is None:
      self.process.send_signal(signum)


def _last_json_line(lines: Sequence[str]) -> dict | None:
  for line in reversed(lines):
    line = line.strip()
    if line.startswith("{"):
      try:
        value = json.loads(line)
      except ValueError:
        continue
      if isinstance(value, dict) and "step" in value:
        return value
  return None


def run_point(
  config_path: str, sweep_dir: str, point: Point, stop: _Stop, echo: bool = True
) -> str:
  """Runs (or skips) one point; returns 'skipped' | 'done' | 'failed' | 'stopped'."""
  workdir = os.path.join(sweep_dir, point.name)
  os.makedirs(workdir, exist_ok=True)
  log_path = os.path.join(workdir, _LOG_FILE)
  done_path = os.path.join(workdir, _DONE_FILE)
  identity = {"config": config_path, "overrides": point.overrides}
  done = _read_json(done_path)
  if done is not None and all(
    done.get(k) == json.loads(json.dumps(v)) for k, v in identity.items()
  ):
    message = f"skipped {point.name}: done at step {done.get('step')} ({_DONE_FILE})"
    print(f"[sweep] {message}", flush=True)
    with open(log_path, "a") as log:
      log.write(f"# sweep {time.strftime('%Y-%m-%d %H:%M:%S')}: {message}\n")
    return "skipped"
  if done is not None:
    print(f"[sweep] {point.name}: config or overrides changed since it finished; rerunning.")
    os.remove(done_path)

  record = _read_json(os.path.join(workdir, _POINT_FILE)) or {"attempts": []}
  record.update(
    name=point.name,
    config=config_path,
    axes=dict(point.axes),
    seed=point.seed,
    fixed=dict(point.fixed),
    overrides=point.overrides,
  )
  command = train_command(config_path, workdir, point)
  print(f"[sweep] running {point.name}: {shlex.join(command)}", flush=True)
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  start = time.time()
  tail: list[str] = []
  with open(log_path, "a") as log:
    log.write(f"# sweep {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(command)}\n")
    log.flush()
    process = subprocess.Popen(
      command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    stop.process = process
    try:
      for line in process.stdout:
        log.write(line)
        log.flush()
        tail = (tail + [line])[-40:]
        if echo:
          sys.stdout.write(f"[{point.name}] {line}")
          sys.stdout.flush()
    except KeyboardInterrupt:
      stop.requested = True  # The child got the same SIGINT and saves a checkpoint.
    returncode = process.wait()
    stop.process = None
  seconds = time.time() - start
  result = _last_json_line(tail)
  step = result.get("step") if result else None
  target = target_step(_read_json(os.path.join(workdir, "config.json")))
  finished = (
    returncode == 0
    and result is not None
    and not result.get("preempted")
    and step is not None
    and target is not None
    and int(step) >= target
  )
  record["attempts"].append(
    {
      "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)),
      "seconds": seconds,
      "returncode": returncode,
      "step": step,
    }
  )
  _write_json(os.path.join(workdir, _POINT_FILE), record)
  failed_path = os.path.join(workdir, _FAILED_FILE)
  if finished:
    if os.path.exists(failed_path):
      os.remove(failed_path)
    _write_json(
      done_path,
      {
        **identity,
        "name": point.name,
        "returncode": returncode,
        "step": int(step),
        "wall_seconds": seconds,
        "total_wall_seconds": sum(a["seconds"] for a in record["attempts"]),
        "attempts": len(record["attempts"]),
        "train_summary": result,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
      },
    )
    print(f"[sweep] done {point.name}: step {step} in {seconds:.1f} s", flush=True)
    return "done"
  if stop.requested:
    print(f"[sweep] stopped during {point.name} (step {step}); re-run to resume.", flush=True)
    return "stopped"
  reason = (
    f"exit code {returncode}"
    if returncode != 0
    else f"exited at step {step}, not the final step {target}"
  )
  _write_json(
    failed_path,
    {
      **identity,
      "name": point.name,
      "returncode": returncode,
      "step": step,
      "reason": reason,
      "wall_seconds": seconds,
      "log_tail": [line.rstrip("\n") for line in tail[-20:]],
    },
  )
  print(f"[sweep] FAILED {point.name}: {reason}; see {log_path}", flush=True)
  return "failed"


# ----------------------------------------------------------------------------
# Summaries.


def read_metrics(path: str) -> list[dict]:
  """metrics.jsonl lines, keeping only the latest of runs that resumed from an earlier step.

  A line at or before a step already logged for its split means the run restarted from a
  checkpoint: the lines it superseded (later steps, and that step of that split) are dropped.
  A truncated last line (a run killed mid-write) is ignored.
  """
  kept: list[dict] = []
  try:
    with open(path) as f:
      raw = f.readlines()
  except OSError:
    return kept
  for text in raw:
    try:
      line = json.loads(text)
    except ValueError:
      continue
    if not isinstance(line, dict) or "step" not in line:
      continue
    step, split = int(line["step"]), line.get("split")
    if any(k.get("split") == split and int(k["step"]) >= step for k in kept):
      kept = [
        k
        for k in kept
        if int(k["step"]) < step or (int(k["step"]) == step and k.get("split") != split)
      ]
    kept.append(line)
  return kept


def _elapsed(line: dict) -> float | None:
  for key in _ELAPSED_KEYS:
    value = line.get(key)
    if isinstance(value, (int, float)) and math.isfinite(value):
      return float(value)
  return None


def eval_wall_seconds(lines: Sequence[dict]) -> dict[int, float]:
  """Seconds since the run started for each eval line's step (see the module docstring)."""
  train = sorted(
    ((int(l["step"]), l) for l in lines if l.get("split") == "train"), key=lambda t: t[0]
  )
  cumulative, prev, marks = 0.0, 0, []  # marks: (step, seconds at step, rate)
  for step, line in train:
    rate = line.get("steps_per_sec")
    if isinstance(rate, (int, float)) and rate > 0:
      cumulative += (step - prev) / rate
      marks.append((step, cumulative, float(rate)))
    prev = step
  result = {}
  for line in lines:
    if line.get("split") != "eval":
      continue
    step = int(line["step"])
    own = _elapsed(line)
    if own is not None:
      result[step] = own
      continue
    if not marks:
      continue
    before = [m for m in marks if m[0] <= step]
    after = [m for m in marks if m[0] > step]
    base_step, base_seconds = (before[-1][0], before[-1][1]) if before else (0, 0.0)
    rate = after[0][2] if after else marks[-1][2]
    result[step] = base_seconds + (step - base_step) / rate
  return result


def _main_metric(lines: Sequence[dict], run_dir: str, task: str | None) -> tuple[str | None, str]:
  for line in reversed(lines):
    if isinstance(line.get("main_metric"), str):
      name = line["main_metric"]
      return name, line.get("main_metric_mode") or metric_mode(task, name)
  best = _read_json(os.path.join(run_dir, "best", "best.json"))
  if best and isinstance(best.get("metric"), str):
    return best["metric"], metric_mode(task, best["metric"])
  return task_main_metric(task)


def _crop_pixels(config: dict) -> int | None:
  crop = config.get("crop_size")
  if crop is None:
    crop = config.get("dataset", {}).get("image_size")
  if crop is None:
    return None
  if isinstance(crop, (list, tuple)):
    return int(crop[0]) * int(crop[-1])
  return int(crop) * int(crop)


def _number(text: Any) -> float | None:
  try:
    value = float(text)
  except (TypeError, ValueError):
    return None
  return value if math.isfinite(value) else None


def summarize_run(run_dir: str) -> tuple[dict, dict]:
  """(summary row, series) of one sub-workdir; series holds the main metric's curve."""
  point = _read_json(os.path.join(run_dir, _POINT_FILE)) or {}
  config = _read_json(os.path.join(run_dir, "config.json")) or {}
  done = _read_json(os.path.join(run_dir, _DONE_FILE))
  failed = _read_json(os.path.join(run_dir, _FAILED_FILE))
  lines = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
  task = (config.get("task") or {}).get("name")
  main, mode = _main_metric(lines, run_dir, task)

  row: dict[str, Any] = {"point": point.get("name", os.path.basename(run_dir))}
  row["status"] = (
    "done" if done else "failed" if failed else "incomplete" if lines or config else "not_started"
  )
  for key, value in (point.get("axes") or {}).items():
    row[f"config.{key}"] = value  # Prefixed: an axis may be a key that is also a column.
  row["seed"] = config.get("seed", point.get("seed"))
  row["task"] = task
  row["main_metric"] = main
  row["main_mode"] = mode

  steps = max((int(l["step"]) for l in lines if l.get("split") == "train"), default=None)
  if done and done.get("step") is not None:
    steps = max(steps or 0, int(done["step"]))
  row["steps"] = steps
  row["num_train_steps"] = config.get("num_train_steps")
  batch = config.get("batch_size")
  dense = (config.get("task") or {}).get("sampling") == "dense"
  per_image = _crop_pixels(config) if dense else config.get("points_per_image")
  row["batch_size"] = batch
  row["points_per_image"] = config.get("points_per_image")
  row["pixel_count"] = (
    "dense: batch_size x crop pixels" if dense else ("sampled: batch_size x points_per_image")
  )
  row["train_pixels"] = (
    int(steps) * int(batch) * int(per_image) if None not in (steps, batch, per_image) else None
  )
  attempts = point.get("attempts") or []
  row["wall_seconds"] = (
    round(sum(a.get("seconds", 0.0) for a in attempts), 3)
    if attempts
    else (done.get("total_wall_seconds") if done else None)
  )

  evals = [l for l in lines if l.get("split") == "eval"]
  times = eval_wall_seconds(lines)
  row["train_seconds"] = round(max(times.values()), 3) if times else None
  names = sorted(
    {
      k
      for l in evals
      for k, v in l.items()
      if k not in _NON_METRIC_KEYS and isinstance(v, (int, float))
    },
    key=lambda k: (k != main, k),
  )
  main_series = [
    (int(l["step"]), float(l[main])) for l in evals if main in l and _number(l[main]) is not None
  ]
  if main_series:
    pick = max if mode == "max" else min
    best_step, best_value = pick(main_series, key=lambda t: t[1])
    row.update(final_main=main_series[-1][1], best_main=best_value, best_main_step=best_step)
  else:
    row.update(final_main=None, best_main=None, best_main_step=None)
  for name in names:
    values = [float(l[name]) for l in evals if _number(l.get(name)) is not None]
    pick = max if metric_mode(task, name) == "max" else min
    row[f"final_{name}"] = values[-1] if values else None
    row[f"best_{name}"] = pick(values) if values else None
  last_attempt = attempts[-1] if attempts else {}
  row["returncode"] = (done or failed or last_attempt).get("returncode")
  row["error"] = failed.get("reason") if failed else None
  series = {
    "point": row["point"],
    "metric": main,
    "steps": [s for s, _ in main_series],
    "values": [v for _, v in main_series],
    "seconds": [times.get(s) for s, _ in main_series],
  }
  return row, series


_LEAD_COLUMNS = ("point", "status")
_RUN_COLUMNS = (
  "seed",
  "task",
  "main_metric",
  "main_mode",
  "final_main",
  "best_main",
  "best_main_step",
  "steps",
  "num_train_steps",
  "batch_size",
  "points_per_image",
  "train_pixels",
  "pixel_count",
  "wall_seconds",
  "train_seconds",
  "returncode",
  "error",
)


def summary_columns(rows: Sequence[dict], axis_keys: Sequence[str]) -> list[str]:
  metric_columns = sorted(
    {k for r in rows for k in r if k.startswith(("final_", "best_")) and k not in _RUN_COLUMNS},
    key=lambda k: (k.split("_", 1)[1], not k.startswith("final_")),
  )
  return [*_LEAD_COLUMNS, *axis_keys, *_RUN_COLUMNS, *metric_columns]


def run_dirs(sweep_dir: str, order: Sequence[str] = ()) -> list[str]:
  """Sub-workdirs holding a sweep point: those of ``order`` first, then the rest by name."""
  found = sorted(
    d for d in os.listdir(sweep_dir) if os.path.isfile(os.path.join(sweep_dir, d, _POINT_FILE))
  )
  ordered = [d for d in order if d in found] + [d for d in found if d not in order]
  return [os.path.join(sweep_dir, d) for d in ordered]


def summarize(sweep_dir: str) -> list[dict]:
  """Writes summary.csv, summary.json and the plots; returns the rows."""
  spec = _read_json(os.path.join(sweep_dir, "sweep.json")) or {}
  dirs = run_dirs(sweep_dir, spec.get("points", ()))
  results = [summarize_run(d) for d in dirs]
  rows = [r for r, _ in results]
  axis_keys = [f"config.{k}" for k in spec.get("axes", {})]
  for row in rows:  # Points from an earlier grid may have other axes.
    axis_keys += [k for k in row if k.startswith("config.") and k not in axis_keys]
  columns = summary_columns(rows, axis_keys)
  with open(os.path.join(sweep_dir, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
      writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
  plots = plot_summary(sweep_dir, rows, [s for _, s in results], axis_keys)
  _write_json(
    os.path.join(sweep_dir, "summary.json"),
    {
      "columns": columns,
      "axes": axis_keys,
      "rows": [{k: row.get(k) for k in columns} for row in rows],
      "plots": plots,
      "failures": [r["point"] for r in rows if r["status"] == "failed"],
      "notes": {
        "train_pixels": "steps x batch_size x points_per_image; for "
        "task.sampling='dense', steps x batch_size x crop pixels",
        "train_seconds": "training wall-clock at the last eval, from metrics.jsonl "
        "(steps_per_sec of train lines when no time field)",
        "wall_seconds": "sum over the sweep's launches of the subprocess wall time",
      },
    },
  )
  return rows


# ----------------------------------------------------------------------------
# Plots.


def axis_scale(values: Sequence[str]) -> tuple[str, list[float] | None]:
  """'category' | 'linear' | 'log' for an axis's values, and the numbers if numeric."""
  numbers = [_number(v) for v in values]
  if any(n is None for n in numbers):
    return "category", None
  positive = [n for n in numbers if n > 0]
  if len(positive) == len(numbers) and max(positive) / min(positive) > 100:
    return "log", numbers
  return "linear", numbers


def plot_summary(
  sweep_dir: str, rows: Sequence[dict], series: Sequence[dict], axis_keys: Sequence[str]
) -> list[str]:
  """Writes the PNG plots; returns their file names."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  metrics = sorted({s["metric"] for s in series if s["metric"] and s["values"]})
  label = " / ".join(metrics) or "main metric"
  written = []
  for x_key, x_label, file_name in (
    ("steps", "step", "metric_vs_step.png"),
    ("seconds", "training wall-clock (s)", "metric_vs_wallclock.png"),
  ):
    fig, ax = plt.subplots(figsize=(8, 5))
    for s in series:
      pairs = [(x, y) for x, y in zip(s[x_key], s["values"]) if x is not None]
      if pairs:
        ax.plot(*zip(*pairs), marker="o", markersize=3, label=s["point"])
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"eval {label}")
    ax.set_title(f"eval {label} vs {x_label}")
    if ax.lines:
      ax.legend(fontsize=6, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(sweep_dir, file_name), dpi=100)
    plt.close(fig)
    written.append(file_name)

  for key in axis_keys:
    values = list(dict.fromkeys(str(r[key]) for r in rows if r.get(key) is not None))
    if not values:
      continue
    scale, numbers = axis_scale(values)
    position = (
      {v: i for i, v in enumerate(values)} if scale == "category" else dict(zip(values, numbers))
    )
    others = [k for k in axis_keys if k != key]
    groups: dict[tuple, dict[str, list[float]]] = {}
    for row in rows:
      if row.get(key) is None or _number(row.get("final_main")) is None:
        continue
      group = tuple((k, row.get(k)) for k in others)
      groups.setdefault(group, {}).setdefault(str(row[key]), []).append(float(row["final_main"]))
    fig, ax = plt.subplots(figsize=(7, 5))
    for group, by_value in groups.items():
      xs = [v for v in values if v in by_value]
      means = [sum(by_value[v]) / len(by_value[v]) for v in xs]
      low = [m - min(by_value[v]) for m, v in zip(means, xs)]
      high = [max(by_value[v]) - m for m, v in zip(means, xs)]
      name = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in group) or "mean over seeds"
      ax.errorbar(
        [position[v] for v in xs], means, yerr=[low, high], marker="o", capsize=4, label=name
      )
    if scale == "category":
      ax.set_xticks(range(len(values)))
      ax.set_xticklabels(values)
    elif scale == "log":
      ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(f"final eval {label} (mean, min-max over seeds)")
    ax.set_title(f"final {label} vs {key}")
    if groups:
      ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    file_name = f"final_vs_{safe_component(key.removeprefix('config.'))}.png"
    fig.savefig(os.path.join(sweep_dir, file_name), dpi=100)
    plt.close(fig)
    written.append(file_name)
  return written


# ----------------------------------------------------------------------------
# The launcher.

FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string(
    "config", None, "Base config file, passed to each run as --config (path.py[:arg])."
  )
  flags.DEFINE_string("workdir", None, "Sweep directory; each point trains in a sub-directory.")
  flags.DEFINE_multi_string("axis", [], "config.KEY=V1,V2,...: a swept key (repeatable).")
  flags.DEFINE_list("seeds", None, "Values of config.seed, e.g. 0,1 (default: the config's).")
  flags.DEFINE_multi_string("set", [], "config.KEY=VALUE applied to every point (repeatable).")
  flags.DEFINE_bool("dry_run", False, "Print the points and their commands; run nothing.")
  flags.DEFINE_bool(
    "summarize_only", False, "Only rebuild summary.csv/json and the plots from the sub-workdirs."
  )
  flags.DEFINE_bool("echo", True, "Echo each run's output (it is always in <point>/sweep.log).")
  flags.mark_flag_as_required("workdir")


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  sweep_dir = FLAGS.workdir
  if FLAGS.summarize_only:
    if not os.path.isdir(sweep_dir):
      _fail(f"No sweep directory {sweep_dir!r}.")
    rows = summarize(sweep_dir)
    print(f"[sweep] summarized {len(rows)} runs into {sweep_dir}/summary.csv")
    return
  if not FLAGS.config:
    _fail("--config is required unless --summarize_only.")
  try:
    axes = parse_axes(FLAGS.axis)
    fixed = [parse_assignment(s) for s in FLAGS["set"].value]
    seeds = [s.strip() for s in FLAGS.seeds] if FLAGS.seeds else None
    for seed in seeds or ():
      int(seed)
    points = expand_grid(axes, seeds, fixed)
    check_keys(FLAGS.config, [k for k, _ in axes] + [k for k, _ in fixed] + ["seed"])
  except ValueError as e:
    _fail(str(e))
  print(f"[sweep] {len(points)} points into {sweep_dir}", flush=True)
  if FLAGS.dry_run:
    for point in points:
      command = train_command(FLAGS.config, os.path.join(sweep_dir, point.name), point)
      print(f"{point.name}: {shlex.join(command)}")
    return
  os.makedirs(sweep_dir, exist_ok=True)
  _write_json(
    os.path.join(sweep_dir, "sweep.json"),
    {
      "config": FLAGS.config,
      "axes": dict(axes),
      "seeds": seeds,
      "set": dict(fixed),
      "points": [p.name for p in points],
    },
  )
  stop = _Stop()
  previous = signal.signal(signal.SIGTERM, stop.handle)
  outcomes = {}
  try:
    for point in points:
      outcomes[point.name] = run_point(FLAGS.config, sweep_dir, point, stop, echo=FLAGS.echo)
      if stop.requested:
        break
  finally:
    signal.signal(signal.SIGTERM, previous)
  summarize(sweep_dir)
  failed = [n for n, o in outcomes.items() if o == "failed"]
  counts = {o: list(outcomes.values()).count(o) for o in ("done", "skipped", "failed")}
  print(
    f"[sweep] {counts['done']} run, {counts['skipped']} skipped, {counts['failed']} failed; "
    f"summary in {sweep_dir}/summary.csv",
    flush=True,
  )
  if stop.requested:
    print("[sweep] stopped early; re-run the same command to resume.", file=sys.stderr)
    sys.exit(3)
  if failed:
    print(
      "[sweep] failed points (see <point>/sweep_failed.json and sweep.log):\n  "
      + "\n  ".join(failed),
      file=sys.stderr,
    )
    sys.exit(1)


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def run():
  _define_flags()
  cli.run(
    _main,
    "Runs a grid of pixelnet-train runs, one after another, and summarises them.\n\n"
    "pixelnet-sweep --config CONFIG.py --workdir SWEEP --axis config.KEY=V1,V2 [--seeds 0,1]",
    ["config", "workdir", "axis", "seeds", "set", "dry_run", "summarize_only", "echo"],
  )


if __name__ == "__main__":
  run()
