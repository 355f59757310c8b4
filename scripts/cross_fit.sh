#!/usr/bin/env bash
# Both collaborations again, with out-of-fold partner predictions of the train split (k-fold cross-fitting),
# beside the in-sample ones of the main job, in the same tables. Run it after scripts/run_default.sh:
#   OUT=runs/default FOLDS=2 bash scripts/cross_fit.sh        (PROFILE=tiny|gpu as in run_default.sh)
# For each fold i of K (a hash of the dialogue id, uneed/tasks/folds.py) an LLM and a CRS train on the
# other folds' dialogues and predict fold i's train samples; the receivers then train on those predictions
# (only for the train samples the main job's receivers had partner predictions for, so both variants see
# the same coverage), with the main job's partner models' valid/test predictions at test time, as in-sample.
# Time: K LLM and K CRS trainings plus two receivers, the CRS trainings beside each other (PARALLEL=1, the
# default; their logs in $OUT/logs): 38 minutes on 2 CPU cores for the default profile (2026-11-28 14:24; 58
# one step after another at 05:14, partly beside other work; README, cross-fitting).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/profile.sh
OUT=${OUT:-runs/$PROFILE}
FOLDS=${FOLDS:-2}
[[ "$FOLDS" =~ ^[0-9]+$ ]] && [ "$FOLDS" -ge 2 ] || { echo "error: FOLDS must be a whole number of at least 2, got '$FOLDS'" >&2; exit 2; }
for need in agent.yaml llm-base/model/config.json llm/predictions_train.jsonl crs/predictions_train.jsonl; do
  [ -e "$OUT/$need" ] || { echo "error: $OUT/$need is missing: run scripts/run_default.sh first" >&2; exit 2; }
done
DATA=$(sed -n 's/^data: //p' "$OUT/agent.yaml")
XFIT="$OUT/xfit"
mkdir -p "$XFIT"

step() { echo; echo "=== $* ==="; }
done_() { [ -f "$1/test_metrics.json" ]; }  # a finished step is not run again

# The out-of-fold predictions of one partner (llm or crs) for the train samples the main job's partner
# predicted, followed by the main job's partner's own valid/test predictions → $XFIT/<partner>_oof.jsonl
merge_out_of_fold() {
  step "out-of-fold $1 predictions (train) + the main job's $1 valid/test predictions → $XFIT/$1_oof.jsonl"
  python - "$OUT" "$XFIT" "$FOLDS" "$1" <<'EOF'
import json, sys
from pathlib import Path

out, xfit, folds, partner = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
in_sample = {json.loads(line)["key"] for line in open(out / partner / "predictions_train.jsonl", encoding="utf-8")}
train = [line for i in range(folds)
         for line in open(xfit / f"{partner}-{i}" / "predictions_train.jsonl", encoding="utf-8")
         if json.loads(line)["key"] in in_sample]
rows = list(train)
for split in ("valid", "test"):
    path = out / partner / f"predictions_{split}.jsonl"
    if path.is_file():
        rows += open(path, encoding="utf-8").readlines()
tmp = xfit / f"{partner}_oof.jsonl.tmp"
tmp.write_text("".join(rows), encoding="utf-8")
tmp.replace(xfit / f"{partner}_oof.jsonl")
print(f"{partner}: out-of-fold predictions for {len(train)} of the {len(in_sample)} train samples "
      f"the in-sample file has; {len(rows) - len(train)} valid/test rows of {out / partner}")
EOF
}
llm_fold() {  # an LLM trained on the train dialogues outside fold $1, predicting that fold's train samples
  step "fold $1 of $FOLDS: the LLM trained without it, predicting it → $XFIT/llm-$1"
  done_ "$XFIT/llm-$1" || presales train llm --data "$DATA" --out "$XFIT/llm-$1" \
      --config "configs/llm_lora$SUFFIX.yaml" --base-model "$OUT/llm-base" --cross-fit "$1/$FOLDS" --predict-splits test
}
crs_fold() {  # the same for a CRS
  step "fold $1 of $FOLDS: the CRS trained without it, predicting it → $XFIT/crs-$1"
  done_ "$XFIT/crs-$1" || presales train crs --data "$DATA" --out "$XFIT/crs-$1" --config "$CRS_CONFIG" \
      --cross-fit "$1/$FOLDS" --predict-splits train
}
crs_llm_xfit() {
  step "LLM assisting CRS, cross-fitted → $OUT/crs-llm-xfit"
  done_ "$OUT/crs-llm-xfit" || presales train crs --data "$DATA" --out "$OUT/crs-llm-xfit" --config "$CRS_CONFIG" \
      --llm-predictions "$XFIT/llm_oof.jsonl" --predict-splits test
}
llm_crs_xfit() {
  step "CRS assisting LLM, cross-fitted → $OUT/llm-crs-xfit"
  llm_crs_start "$OUT"  # as the main job's CRS-assisted LLM starts (scripts/profile.sh)
  done_ "$OUT/llm-crs-xfit" || presales train llm --data "$DATA" --out "$OUT/llm-crs-xfit" \
      --config "configs/llm_lora$SUFFIX.yaml" "${LLM_CRS_START[@]}" --crs-predictions "$XFIT/crs_oof.jsonl" \
      --predict-splits test
}

# As in run_default.sh: the LLMs train alone (all cores), the CRS trainings beside each other (PARALLEL=1, one
# thread each; scripts/profile.sh): the fold LLMs, then the fold CRSs beside the LLM-assisted CRS, then the
# CRS-assisted LLM.
for ((i = 0; i < FOLDS; i++)); do llm_fold "$i"; done
merge_out_of_fold llm
folds=()
for ((i = 0; i < FOLDS; i++)); do folds+=("crs_fold $i"); done
together "${folds[@]}" crs_llm_xfit
merge_out_of_fold crs
llm_crs_xfit

step "the paper's tables, in-sample and cross-fitted → $OUT/tables.md"
presales eval tables --run "$OUT" --out "$OUT/tables.md"
cat "$OUT/tables.md"
