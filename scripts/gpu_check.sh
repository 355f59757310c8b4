#!/usr/bin/env bash
# The check of issue 13 on a GPU machine: PROFILE=gpu (the main job at real size), the tiny pipeline, the throughput
# bench (the training code's tokens/s beside a bare torch loop of the same model, as a ratio) and real checkpoint
# shapes at full size (a BART-base-Chinese and a Qwen2.5-0.5B shape, random weights, trained and answering through
# --base-model), each under its own time limit, writing its figures under $OUT (default runs/gpu_check).
# Run in the project's root:
#   bash scripts/gpu_check.sh                          # all four steps (about 20 minutes on an H200)
#   STEPS=gpu bash scripts/gpu_check.sh                # PROFILE=gpu alone
# On the lent GPU machine (../shared/gpu/README.md; 15 minutes of device time a session, at most 10 a command):
# `bash scripts/gpu_prepare.sh` here (the wheels into .whl), then a device command carrying .whl, e.g.
#   D=$OUT; source .whl/device-setup.sh; timeout 575 env OUT=/tmp/gc STEPS=gpu GPU_S=520 bash scripts/gpu_check.sh; \
#     tar czf $D/gc.tgz -C /tmp gc
# (the archive: a device command brings back at most 8 files; `timeout` and the tar outside it: a command cut at
# the device's limit brings nothing back) and at once, on the same warm machine, the same again with OUT=/tmp/gc2:
# PROFILE=gpu (planned for 12.5 minutes) skips its finished steps. STEPS="tiny bench shapes" in another command or
# session (their limits add up to 7 minutes). PACK=file.tgz packs OUT at the end of this script.
# BENCH_PROFILE=tiny and SHAPES_SIZE=tiny run those steps at test size (they prove the script on a CPU machine).
# Limits (seconds, each step's own `timeout`): SYNTH_S (the full-size corpus), GPU_S, TINY_S, BENCH_S, SHAPES_S.
# A step that times out leaves its partial figures and the summary says so (rc 124). PROFILE=gpu resumes its
# finished steps when run again on the same machine. On the lent machine $OUT is the folder that comes back.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
STEPS=${STEPS:-"gpu tiny bench shapes"}
SYNTH_S=${SYNTH_S:-45}   # the full-size corpus: 14 s there
TINY_S=${TINY_S:-200}   # on an H100: CRS to llm-crs in 93 s, each step a new process (CUDA start)
BENCH_S=${BENCH_S:-170}  # 126 s there
SHAPES_S=${SHAPES_S:-90}  # 56 s there
GPU_S=${GPU_S:-900}  # PROFILE=gpu is planned for 12.5 minutes on an H200 (configs/*_gpu.yaml)
BENCH_STEPS=${BENCH_STEPS:-30}
BENCH_PROFILE=${BENCH_PROFILE:-gpu}  # tiny: the same bench at test size (any machine)
SHAPES_SIZE=${SHAPES_SIZE:-base}     # tiny: the same shapes at test size
DATA=${DATA:-data/full}
RUNS=${RUNS:-runs/gpu_check_runs}  # model runs stay here (too large to bring back); figures are copied to $OUT
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"
SUMMARY="$OUT/summary.tsv"
printf 'step\trc\tseconds\tended\n' > "$SUMMARY"

run_step() {  # name limit command...: run under `timeout`, log to $OUT/name.log, record rc and seconds
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s) ==="
  timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$(date +%T)" | tee -a "$SUMMARY"
  tail -n 5 "$OUT/$name.log"
  return 0
}

copy_figures() {  # run-dir name: the small files that hold its figures, of the run and of each run inside it
  local src=$1 dst
  [ -d "$src" ] || return 0
  dst=$(mkdir -p "$OUT/$2" && cd "$OUT/$2" && pwd)
  (cd "$src" && find . -maxdepth 2 -type f \( -name '*.json' -o -name 'log.jsonl' -o -name '*.md' \
      -o -name '*.png' -o -name 'config.yaml' -o -name '*.log' \) -not -name 'predictions_*' -not -name 'item_*.json' \
      -not -path './best/*' -not -path './checkpoint/*' -not -path './adapter/*' -not -path './merged/*' \
      -not -path './model/*' -size -2M -print0 | xargs -0 -r cp --parents -t "$dst")
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'transformers', transformers.__version__, 'peft', peft.__version__)"
  python3 -c "import faiss; print('faiss', faiss.__version__, 'gpus', faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0)"
  nproc; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
# the GPU's utilisation and memory every 2 s through all steps (what a profile would ask first: is it busy?)
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 2 > "$OUT/gpu_util.csv" 2>&1 &
  UTIL_PID=$!
  trap 'kill $UTIL_PID 2>/dev/null' EXIT
fi

for step in $STEPS; do
  case "$step" in
    tiny)
      run_step tiny "$TINY_S" env PROFILE=tiny SKIP_SETUP=1 OUT="$RUNS/tiny" EPISODES=4 bash scripts/run_default.sh
      copy_figures "$RUNS/tiny" tiny ;;
    bench)
      [ "$BENCH_PROFILE" != gpu ] || [ -f "$DATA/test_dialogue.json" ] \
          || run_step synth "$SYNTH_S" presales data synth --out "$DATA" --scale full --seed 0
      run_step bench "$BENCH_S" python3 bench/bench_gpu_throughput.py --profile "$BENCH_PROFILE" \
          $([ "$BENCH_PROFILE" = gpu ] && echo --data "$DATA") \
          --steps "$BENCH_STEPS" --out "$OUT/bench_gpu.json" --trace "$OUT/profile_crs.txt" ;;
    shapes)
      [ -f "$RUNS/data_tiny/test_dialogue.json" ] || presales data synth --out "$RUNS/data_tiny" --scale tiny --seed 0 \
          > /dev/null
      run_step shapes "$SHAPES_S" python3 bench/bench_checkpoint_shapes.py --size "$SHAPES_SIZE" --data "$RUNS/data_tiny" \
          --out "$RUNS/shapes" --steps 20
      cp "$RUNS/shapes/shapes.json" "$OUT/shapes.json" 2>/dev/null
      for r in crs llm-base llm; do copy_figures "$RUNS/shapes/$r" "shapes/$r"; done ;;
    gpu)
      [ -f "$DATA/test_dialogue.json" ] || run_step synth "$SYNTH_S" presales data synth --out "$DATA" --scale full --seed 0
      run_step gpu "$GPU_S" env PROFILE=gpu SKIP_SETUP=1 OUT="$RUNS/gpu" DATA="$DATA" bash scripts/run_default.sh
      copy_figures "$RUNS/gpu" gpu ;;
    *) echo "error: unknown step '$step' (tiny, bench, shapes, gpu)" >&2; exit 2 ;;
  esac
done
echo; cat "$SUMMARY"
[ -z "${PACK:-}" ] || tar czf "$PACK" -C "$(dirname "$OUT")" "$(basename "$OUT")"
