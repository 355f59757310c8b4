#!/usr/bin/env bash
# The main job on the embedded default, end to end on CPU (about an hour on 2 cores):
#   corpus → CRS → LLM pre-training → LLM instruction tuning → both collaborations → controller
#   → the paper's tables → replay of the test split and simulated shoppers through both graphs
# and an agent run directory that `presales chat --run runs/default` loads.
#   OUT=runs/default DATA=data/small SCALE=small bash scripts/run_default.sh
# PROFILE=tiny runs the same steps with the tiny corpus and the tiny configs (a few minutes): a smoke test
# of the whole pipeline, with models too small to be useful.
# PROFILE=gpu runs them on one GPU at real size: the full-size corpus, a BART-base-size CRS (configs/crs_gpu.yaml)
# and a ~190M-parameter decoder LLM built from config (configs/*_gpu.yaml), each training capped in minutes.
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
presales data baselines "$DATA" > "$OUT/baselines.json"
printf 'data: %s\n' "$(cd "$DATA" && pwd)" > "$OUT/agent.yaml"

step "CRS (section 3.3) → $OUT/crs"
done_ "$OUT/crs" || presales train crs --data "$DATA" --out "$OUT/crs" --config "$CRS_CONFIG"

step "LLM pre-training on the corpus text → $OUT/llm-base"
[ -f "$OUT/llm-base/model/config.json" ] || presales train llm-base --data "$DATA" --out "$OUT/llm-base" \
    --config "configs/llm_base$SUFFIX.yaml"

step "LLM instruction tuning (section 3.2; full fine-tuning in the default profile, LoRA in tiny and gpu) → $OUT/llm"
# --predict-train: the LLM also predicts (a seeded part of) the train split: the [LLM] inputs of the CRS below
done_ "$OUT/llm" || presales train llm --data "$DATA" --out "$OUT/llm" --config "configs/llm_lora$SUFFIX.yaml" \
    --base-model "$OUT/llm-base" --predict-train "$PREDICT_TRAIN"

step "LLM assisting CRS (section 3.5) → $OUT/crs-llm"
combine "$OUT/llm"
done_ "$OUT/crs-llm" || presales train crs --data "$DATA" --out "$OUT/crs-llm" --config "$CRS_CONFIG" \
    --llm-predictions "$OUT/llm/predictions_all.jsonl" --predict-splits test

step "CRS assisting LLM (section 3.4) → $OUT/llm-crs"
combine "$OUT/crs"
# only its test split is predicted (the tables): nothing downstream reads its valid predictions
done_ "$OUT/llm-crs" || presales train llm --data "$DATA" --out "$OUT/llm-crs" --config "configs/llm_lora$SUFFIX.yaml" \
    --base-model "$OUT/llm-base" --crs-predictions "$OUT/crs/predictions_all.jsonl" --predict-splits test

step "LLM as the controller of graph 1 → $OUT/controller"
done_ "$OUT/controller" || presales train controller --data "$DATA" --out "$OUT/controller" --base-model "$OUT/llm" \
    --config "configs/controller$SUFFIX.yaml"

step "the paper's tables → $OUT/tables.md"
presales eval tables --run "$OUT" --out "$OUT/tables.md"
cat "$OUT/tables.md"

# the agent measured as it runs (eval/replay.py, eval/simulate.py); a finished report is not made again
EPISODES=${EPISODES:-$([ "$PROFILE" = tiny ] && echo 10 || echo 100)}
step "replay of the test split through both graphs → $OUT/replay"
# by default (0) one worker process per core on CPU, each replaying one conversation at a time, and one
# process batching 16 conversations' model calls on a GPU; batched calls also pay on the tiny models
# (README, replay speed)
WORKERS=${WORKERS:-$([ "$PROFILE" = tiny ] && echo 16 || echo 0)}
[ -f "$OUT/replay/replay.json" ] || presales replay --data "$DATA" --run "$OUT" --graph both --split test \
    --out "$OUT/replay" --progress false --workers "$WORKERS"

step "simulated shoppers, $EPISODES episodes per graph and reference policy → $OUT/simulate"
[ -f "$OUT/simulate/simulate.json" ] || presales simulate --run "$OUT" --graph both --episodes "$EPISODES" \
    --max-turns 8 --seed "$SEED" --out "$OUT/simulate" --progress false
echo
echo "Talk to it:  presales chat --graph llm --run $OUT     (or --graph crs)"
