#!/usr/bin/env bash
# The sampling analysis of experiments/results/sampling_analysis.md, one command per dataset:
#   experiments/run_sampling_analysis.sh procedural|bsds|bsds_diversity_head|camvid|camvid_diversity_head [RUNS_DIR]
# Runs every sweep of that dataset (2 seeds per point; finished points are skipped, so a
# cut run resumes), then prints the tables and writes the plots into RUNS_DIR (default
# runs/). All but procedural need PIXELNET_TEST_DATA (the folder holding BSR/ and
# camvid/).
set -euo pipefail
dataset=${1:?usage: experiments/run_sampling_analysis.sh procedural|bsds|bsds_diversity_head|camvid|camvid_diversity_head [RUNS_DIR]}
runs=${2:-runs}
analyse="python experiments/sampling_analysis.py"
# The 500-step base of each real-data sweep (2 seeds), and the BSDS benchmark columns.
B="--config experiments/configs/bsds_edges.py --seeds 0,1 --set config.num_train_steps=500 --set config.eval_every=250 --set config.checkpoint_every=500"
C="--config experiments/configs/camvid_segmentation.py:quick --seeds 0,1 --set config.num_train_steps=500 --set config.eval_every=500 --set config.checkpoint_every=500"
E="--metric f_pixel --extra ods_val25/results.json:ods_f --extra ods_val25/results.json:ap"

# diversity_sweep BASE DIR IMAGES:PIXELS...: one sweep per batch size into DIR/b<IMAGES>,
# with the pixels per image that keep the batch total fixed (claim b).
diversity_sweep() {
  local base=$1 dir=$2 bp
  shift 2
  for bp in "$@"; do
    pixelnet-sweep $base --workdir $dir/b${bp%%:*} \
      --axis config.batch_size=${bp%%:*} --set config.points_per_image=${bp##*:}
  done
}

case $dataset in
  procedural)
    S="--config experiments/configs/procedural_segmentation.py --seeds 0,1 --set config.num_train_steps=600 --set config.eval_every=200 --set config.checkpoint_every=600"
    pixelnet-sweep $S --workdir $runs/sweep_pixels --axis config.points_per_image=4,16,64,256,1024
    pixelnet-sweep $S --workdir $runs/sweep_dense --axis config.task.sampling=dense
    diversity_sweep "$S" $runs/sweep_diversity 1:2048 2:1024 4:512 8:256
    pixelnet-sweep $S --workdir $runs/sweep_sampler --axis config.task.sampling=uniform,class_stratified
    pixelnet-sweep $S --workdir $runs/sweep_hard --axis config.task.sampling=hard
    pixelnet-sweep $S --workdir $runs/sweep_head --axis config.model.head=linear,mlp
    pixelnet-sweep --config experiments/configs/procedural_segmentation.py --seeds 0,1 \
      --workdir $runs/sweep_head_1200 --axis config.model.head=linear,mlp \
      --set config.eval_every=400 --set config.checkpoint_every=1200
    pixelnet-sweep $S --workdir $runs/sweep_widths --axis "config.model.heads.mlp.widths=(64,64),(1024,1024),(256,)"
    pixelnet-sweep $S --workdir $runs/sweep_linear_raw --set config.model.head=linear \
      --axis config.model.heads.linear.normalize=False
    pixelnet-sweep $S --workdir $runs/sweep_nobn --axis config.model.trunks.vgg_small.batch_norm=False
    pixelnet-sweep $S --workdir $runs/sweep_linear_nobn --set config.model.head=linear \
      --set config.model.trunks.vgg_small.batch_norm=False --axis config.model.heads.linear.normalize=True,False
    $analyse --out $runs/sampling_pixels $runs/sweep_pixels $runs/sweep_dense
    $analyse --out $runs/sampling_diversity $runs/sweep_diversity/b{1,2,4,8}
    $analyse --out $runs/sampling_sampler $runs/sweep_sampler $runs/sweep_hard
    $analyse --out $runs/sampling_head $runs/sweep_head $runs/sweep_widths $runs/sweep_linear_raw
    $analyse --out $runs/sampling_head_1200 $runs/sweep_head_1200
    $analyse --out $runs/sampling_batchnorm $runs/sweep_head $runs/sweep_nobn $runs/sweep_linear_nobn
    ;;
  bsds)
    pixelnet-sweep $B --workdir $runs/bsds_sweep_sampler --axis config.task.sampling=stratified,uniform
    pixelnet-sweep $B --workdir $runs/bsds_sweep_head --axis config.model.head=linear
    pixelnet-sweep $B --workdir $runs/bsds_sweep_pixels --axis config.points_per_image=4,16,64,256
    pixelnet-sweep $B --workdir $runs/bsds_sweep_dense --axis config.task.sampling=dense
    pixelnet-sweep $B --workdir $runs/bsds_sweep_hard --axis config.task.sampling=hard
    pixelnet-sweep $B --workdir $runs/bsds_sweep_nobn --axis config.model.trunks.vgg.batch_norm=False
    for run in $runs/bsds_sweep_*/*__seed=*; do
      experiments/bsds_val_subset_ods.sh "$run"  # the BSDS benchmark on the first 25 val images
    done
    $analyse $E --out $runs/sampling_bsds_pixels $runs/bsds_sweep_pixels $runs/bsds_sweep_sampler \
      $runs/bsds_sweep_dense
    $analyse $E --out $runs/sampling_bsds_head $runs/bsds_sweep_head $runs/bsds_sweep_sampler
    $analyse $E --out $runs/sampling_bsds_dense $runs/bsds_sweep_dense $runs/bsds_sweep_sampler
    $analyse $E --out $runs/sampling_bsds_hard_nobn $runs/bsds_sweep_hard $runs/bsds_sweep_nobn \
      $runs/bsds_sweep_sampler
    ;;
  bsds_diversity_head)
    # The rest of the BSDS500 analysis, split off from bsds so each command fits in 2 hours.
    # b4 (4 images x 1,000 px) is the base config, the bsds base rerun (it reproduces it).
    diversity_sweep "$B" $runs/bsds_sweep_diversity 1:4000 2:2000 4:1000 8:500
    pixelnet-sweep $B --workdir $runs/bsds_sweep_linear_raw --set config.model.head=linear \
      --axis config.model.heads.linear.normalize=False
    pixelnet-sweep $B --workdir $runs/bsds_sweep_widths --axis "config.model.heads.mlp.widths=(64,64),(256,),(1024,1024)"
    for run in $runs/bsds_sweep_diversity/*/*__seed=* $runs/bsds_sweep_linear_raw/*__seed=* \
      $runs/bsds_sweep_widths/*__seed=*; do
      experiments/bsds_val_subset_ods.sh "$run"
    done
    $analyse $E --out $runs/sampling_bsds_diversity $runs/bsds_sweep_diversity/b{1,2,4,8}
    $analyse $E --out $runs/sampling_bsds_widths $runs/bsds_sweep_widths $runs/bsds_sweep_linear_raw \
      $runs/bsds_sweep_diversity/b4
    ;;
  camvid)
    pixelnet-sweep $C --workdir $runs/camvid_sweep_pixels --axis config.points_per_image=4,16,64,256,1000
    pixelnet-sweep $C --workdir $runs/camvid_sweep_sampler --axis config.task.sampling=uniform
    pixelnet-sweep $C --workdir $runs/camvid_sweep_head --axis config.model.head=linear
    pixelnet-sweep $C --workdir $runs/camvid_sweep_dense --axis config.task.sampling=dense
    $analyse --out $runs/sampling_camvid_pixels $runs/camvid_sweep_pixels $runs/camvid_sweep_dense
    $analyse --out $runs/sampling_camvid_sampler_head $runs/camvid_sweep_sampler $runs/camvid_sweep_head \
      "$runs/camvid_sweep_pixels"
    ;;
  camvid_diversity_head)
    # The rest of the CamVid analysis (b, c's hard sampler, d's widths and normalisation, e),
    # split off from camvid. b4 (4 images x 1,000 px) is the base config, the camvid base rerun.
    diversity_sweep "$C" $runs/camvid_sweep_diversity 1:4000 2:2000 4:1000 8:500
    pixelnet-sweep $C --workdir $runs/camvid_sweep_widths --axis "config.model.heads.mlp.widths=(64,64),(256,),(1024,1024)"
    pixelnet-sweep $C --workdir $runs/camvid_sweep_linear_raw --set config.model.head=linear \
      --axis config.model.heads.linear.normalize=False
    pixelnet-sweep $C --workdir $runs/camvid_sweep_hard --axis config.task.sampling=hard
    pixelnet-sweep $C --workdir $runs/camvid_sweep_nobn --axis config.model.trunks.vgg.batch_norm=False
    $analyse --out $runs/sampling_camvid_diversity $runs/camvid_sweep_diversity/b{1,2,4,8}
    $analyse --out $runs/sampling_camvid_widths $runs/camvid_sweep_widths $runs/camvid_sweep_linear_raw \
      $runs/camvid_sweep_diversity/b4
    $analyse --out $runs/sampling_camvid_hard_nobn $runs/camvid_sweep_hard $runs/camvid_sweep_nobn \
      $runs/camvid_sweep_diversity/b4
    ;;
  *)
    echo "unknown dataset $dataset: procedural, bsds, bsds_diversity_head, camvid or camvid_diversity_head" >&2
    exit 2
    ;;
esac
