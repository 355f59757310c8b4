# The settings of a PROFILE (default, tiny or gpu) and how steps share the machine: sourced by
# scripts/run_default.sh and scripts/cross_fit.sh.
# SUFFIX picks configs/llm_base$SUFFIX.yaml, llm_lora$SUFFIX.yaml and controller$SUFFIX.yaml; PROFILE_SCALE is
# the corpus scale it trains on; PREDICT_TRAIN how many train samples the LLM predicts for the CRS;
# PROFILE_EPISODES the simulated shoppers per policy and PROFILE_REPLAY_DIALOGUES the test dialogues replayed (0: all).
PROFILE=${PROFILE:-default}
case "$PROFILE" in
  default) SUFFIX=""; CRS_CONFIG=configs/crs_default.yaml; PROFILE_SCALE=small; PREDICT_TRAIN=2000
    PROFILE_EPISODES=10; PROFILE_REPLAY_DIALOGUES=0 ;;
  tiny) SUFFIX="_tiny"; CRS_CONFIG=configs/crs_tiny.yaml; PROFILE_SCALE=tiny; PREDICT_TRAIN=200
    PROFILE_EPISODES=10; PROFILE_REPLAY_DIALOGUES=0 ;;
  gpu) SUFFIX="_gpu"; CRS_CONFIG=configs/crs_gpu.yaml; PROFILE_SCALE=full; PREDICT_TRAIN=1500
    PROFILE_EPISODES=20; PROFILE_REPLAY_DIALOGUES=50 ;;
  *) echo "error: PROFILE must be default, tiny or gpu, got '$PROFILE'" >&2; exit 2 ;;
esac

# How the CRS-assisted LLM starts (run_default.sh, and cross_fit.sh for its cross-fitted twin): where the LLM
# trained every weight (the default profile: $1/llm/model is a whole model) it continues from that LLM for one
# pass over 4,000 of the train samples that have the CRS's answers in their inputs (about half the train split;
# each question once: the LLM it starts from learnt to ask already): 4 minutes on 2 cores, against 21 for the
# same from the pre-trained base, and better on every task but recommendation (README). A LoRA LLM (tiny, gpu)
# leaves an adapter, not a base: there it trains its own adapter from the base, as the paper does. Sets
# LLM_CRS_START.
llm_crs_start() {
  LLM_CRS_START=("--base-model" "$1/llm-base")
  [ ! -f "$1/llm/model/config.json" ] || LLM_CRS_START=("--base-model" "$1/llm" "--epochs" 1 "--lr" 0.0005
                                                       "--max-train-samples" 4000 "--repeat-ask-replies" 1
                                                       "--max-minutes" 6)
}

# PARALLEL=1 (the default): `together` runs the steps (shell functions) it is given at once, each logging to
# $OUT/logs/<step>.log, the machine's cores shared out among them; PARALLEL=0 runs them one after another.
# Which steps go together is the scripts' schedule: on 2 CPU cores two CRS trainings on one thread each finish
# sooner side by side than one after another on two; the LLM's do not (README, the main job's time).
PARALLEL=${PARALLEL:-1}
together() {  # run the given steps ('function' or 'function arg', one word each): one after another, or with
  # PARALLEL=1 at once, then wait for all; a step's log is named by its words ('crs_fold 0' → crs_fold_0.log)
  if [ "$PARALLEL" != 1 ]; then
    for step in "$@"; do $step; done
    return
  fi
  mkdir -p "$OUT/logs"
  local pids=() step name i failed=0
  # the CPU cores shared out among the steps (torch's thread pool reads OMP_NUM_THREADS): each step at the
  # machine's full thread count would oversubscribe the cores, and torch's threads spin while they wait
  local threads=${OMP_NUM_THREADS:-$(( $(nproc) / $# > 0 ? $(nproc) / $# : 1 ))}
  for step in "$@"; do
    name=${step// /_}
    # each step's own wall time goes to the end of its log; a log is appended to, never replaced: running the
    # job again (which skips the finished steps) keeps the logs of the trainings that made them
    ( export OMP_NUM_THREADS=$threads; t0=$SECONDS; echo "--- $(date -u '+%Y-%m-%d %H:%M:%S') UTC ---"; $step
      echo "$name: $((SECONDS - t0)) s" ) >> "$OUT/logs/$name.log" 2>&1 &
    pids+=("$!")
    echo "started $name (log: $OUT/logs/$name.log)"
  done
  for i in "${!pids[@]}"; do
    step=${@:$((i + 1)):1}
    name=${step// /_}
    if wait "${pids[$i]}"; then
      tail -n 1 "$OUT/logs/$name.log"
    else
      echo "error: $name failed; the end of $OUT/logs/$name.log:" >&2
      tail -n 15 "$OUT/logs/$name.log" >&2
      failed=1
    fi
  done
  [ "$failed" = 0 ] || exit 1
}
