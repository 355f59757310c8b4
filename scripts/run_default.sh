#!/usr/bin/env bash
# The main job on the embedded default, end to end on CPU (43 minutes on 2 cores: README):
#   corpus → LLM pre-training → LLM instruction tuning → the CRS beside the LLM-assisted CRS → CRS-assisted LLM → controller
#   → the paper's tables → replay of the test split and simulated shoppers through both graphs
# and an agent run directory that `presales chat --run runs/default` loads.
#   OUT=runs/default DATA=data/small SCALE=small bash scripts/run_default.sh
# PROFILE=tiny runs the same steps with the tiny corpus and the tiny configs (a few minutes): a smoke test
# of the whole pipeline, with models too small to be useful.
# PROFILE=gpu runs them on one GPU at real size: the full-size corpus, a BART-base-size CRS (configs/crs_gpu.yaml)
# and a ~190M-parameter decoder LLM built from config (configs/*_gpu.yaml), each training capped in minutes, the
# steps that wait on nothing at once (PARALLEL=1; a log each in $OUT/logs): planned for 12.5 minutes on one H200
# (README: what it measured there).
# Install the CUDA build of torch first (SKIP_SETUP=1 then skips scripts/setup.sh, which installs the CPU one).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/profile.sh
SCALE=${SCALE:-$PROFILE_SCALE}
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
OUT=${OUT:-runs/$PROFILE}
DATA=${DATA:-data/$SCALE}
SEED=${SEED:-0}  # the corpus seed; each model's seed is in its config file
mkdir -p "$OUT"

step() { echo; echo "=== $* ==="; }
done_() { [ -f "$1/test_metrics.json" ]; }  # a finished step is not run again
# one prediction file of all splits a run predicted (never reading the combined file itself)
combine() { cat $(for s in train valid test; do [ ! -f "$1/predictions_$s.jsonl" ] || echo "$1/predictions_$s.jsonl"; done) \
    > "$1/predictions_all.jsonl"; }

step "corpus ($SCALE, seed $SEED) → $DATA"
[ -f "$DATA/test_dialogue.json" ] || presales data synth --out "$DATA" --scale "$SCALE" --seed "$SEED"
presales data validate "$DATA"
printf 'data: %s\n' "$(cd "$DATA" && pwd)" > "$OUT/agent.yaml"

trivial_baselines() {
  step "the trivial baselines of the tables → $OUT/baselines.json"
  [ -f "$OUT/baselines.json" ] || { presales data baselines "$DATA" > "$OUT/baselines.json.tmp" \
      && mv "$OUT/baselines.json.tmp" "$OUT/baselines.json"; }
}
# The training steps, one function each (the schedule below).
train_crs() {
  step "CRS (section 3.3) → $OUT/crs"
  done_ "$OUT/crs" || presales train crs --data "$DATA" --out "$OUT/crs" --config "$CRS_CONFIG"
}
pretrain_llm() {
  step "LLM pre-training on the corpus text → $OUT/llm-base"
  [ -f "$OUT/llm-base/model/config.json" ] || presales train llm-base --data "$DATA" --out "$OUT/llm-base" \
      --config "configs/llm_base$SUFFIX.yaml"
}
tune_llm() {
  step "LLM instruction tuning (section 3.2; full fine-tuning in the default profile, LoRA in tiny and gpu) → $OUT/llm"
  # --predict-train: the LLM also predicts (a seeded part of) the train split: the [LLM] inputs of the CRS below
  done_ "$OUT/llm" || presales train llm --data "$DATA" --out "$OUT/llm" --config "configs/llm_lora$SUFFIX.yaml" \
      --base-model "$OUT/llm-base" --predict-train "$PREDICT_TRAIN"
}
train_crs_llm() {
  step "LLM assisting CRS (section 3.5) → $OUT/crs-llm"
  combine "$OUT/llm"
  done_ "$OUT/crs-llm" || presales train crs --data "$DATA" --out "$OUT/crs-llm" --config "$CRS_CONFIG" \
      --llm-predictions "$OUT/llm/predictions_all.jsonl" --predict-splits test
}
train_llm_crs() {
  step "CRS assisting LLM (section 3.4) → $OUT/llm-crs"
  combine "$OUT/crs"
  llm_crs_start "$OUT"  # from the tuned LLM or from the base (scripts/profile.sh)
  # only its test split is predicted (the tables): nothing downstream reads its valid predictions
  done_ "$OUT/llm-crs" || presales train llm --data "$DATA" --out "$OUT/llm-crs" --config "configs/llm_lora$SUFFIX.yaml" \
      "${LLM_CRS_START[@]}" --crs-predictions "$OUT/crs/predictions_all.jsonl" --predict-splits test
}
train_controller() {
  step "LLM as the controller of graph 1 → $OUT/controller"
  done_ "$OUT/controller" || presales train controller --data "$DATA" --out "$OUT/controller" --base-model "$OUT/llm" \
      --config "configs/controller$SUFFIX.yaml"
}

# The schedule. With PARALLEL=1 (the default: scripts/profile.sh) `together` runs its steps at once, the cores
# shared out among them. On a GPU machine every step leaves the GPU idle part of the time (data preparation,
# decoding), so all that can overlap does. On 2 CPU cores the LLM's steps gain as much from a second thread as
# from a second process and the CRS's do not (on one thread: stage-2 epochs 1.65 times as long, LLM
# pre-training 1.93 times), so there the LLM trains alone and the two CRS trainings beside each other (README,
# the main job's time).
train_llm() { pretrain_llm; tune_llm; }
if [ "$PROFILE" = gpu ]; then
  together train_crs train_llm trivial_baselines
  together train_crs_llm train_llm_crs train_controller
else
  train_llm
  together train_crs train_crs_llm trivial_baselines
  train_llm_crs
  train_controller
fi

step "the paper's tables → $OUT/tables.md"
presales eval tables --run "$OUT" --out "$OUT/tables.md"
cat "$OUT/tables.md"

# the agent measured as it runs (eval/replay.py, eval/simulate.py); a finished report is not made again.
# By default (WORKERS=0) replay runs one worker process per core on CPU, each replaying one conversation at a
# time, and one process batching 16 conversations' model calls on a GPU; batched calls also pay on the tiny
# models (README, replay speed). REPLAY_DIALOGUES (0: all) and EPISODES come from the profile.
WORKERS=${WORKERS:-$([ "$PROFILE" = tiny ] && echo 16 || echo 0)}
EPISODES=${EPISODES:-$PROFILE_EPISODES}
REPLAY_DIALOGUES=${REPLAY_DIALOGUES:-$PROFILE_REPLAY_DIALOGUES}
replay_test() {
  step "replay of the test split through both graphs ($([ "$REPLAY_DIALOGUES" = 0 ] && echo all || echo "the first $REPLAY_DIALOGUES") dialogues) → $OUT/replay"
  [ -f "$OUT/replay/replay.json" ] || presales replay --data "$DATA" --run "$OUT" --graph both --split test \
      --out "$OUT/replay" --progress false --workers "$WORKERS" \
      $([ "$REPLAY_DIALOGUES" = 0 ] || echo --max-dialogues "$REPLAY_DIALOGUES")
}
simulate_shoppers() {
  step "simulated shoppers, $EPISODES episodes per graph and reference policy → $OUT/simulate"
  [ -f "$OUT/simulate/simulate.json" ] || presales simulate --run "$OUT" --graph both --episodes "$EPISODES" \
      --max-turns 8 --seed "$SEED" --out "$OUT/simulate" --progress false
}
together replay_test simulate_shoppers
echo
echo "Talk to it:  presales chat --graph llm --run $OUT     (or --graph crs)"
