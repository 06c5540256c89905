#!/usr/bin/env bash
# BSDS500 benchmark (NMS, 99 thresholds) of each given run directory on the first N val
# images (default 25): predicts them with the run's latest checkpoint into RUN/ods_val<N>/
# and scores them against their ground truth (--intersection: only the predicted images).
# A quick, noisier stand-in for the full 100-image benchmark, to compare sweep points.
#   experiments/bsds_val_subset_ods.sh [-n N] [-c CONFIG] RUN [RUN ...]
# Needs PIXELNET_TEST_DATA (the folder holding BSR/).
set -euo pipefail
n=25
config=experiments/configs/bsds_edges.py
while getopts "n:c:" opt; do
  case $opt in
    n) n=$OPTARG ;;
    c) config=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
gt="${PIXELNET_TEST_DATA:?set PIXELNET_TEST_DATA to the folder holding BSR/}/BSR/BSDS500/data/groundTruth/val"
for run in "$@"; do
  out="$run/ods_val$n"
  if [ -f "$out/results.json" ]; then
    echo "$run: done before"
    continue
  fi
  # A sweep point's overrides (sweep_point.json) are part of its model: pass them again.
  overrides=()
  if [ -f "$run/sweep_point.json" ]; then
    mapfile -t overrides < <(python -c 'import json, sys
for key, value in json.load(open(sys.argv[1]))["overrides"]:
  print(f"--config.{key}={value}")' "$run/sweep_point.json")
  fi
  pixelnet-predict --config "$config" --workdir "$run" --out_dir "$out/png" --split val \
    --limit "$n" "${overrides[@]}"
  pixelnet-eval-boundaries --nms --intersection --pred_dir "$out/png" --gt_dir "$gt" \
    --thresholds 99 --workers 2 --out "$out/results.json"
done
