# The settings of a PROFILE (default, tiny or gpu): sourced by scripts/run_default.sh and scripts/cross_fit.sh.
# SUFFIX picks configs/llm_base$SUFFIX.yaml, llm_lora$SUFFIX.yaml and controller$SUFFIX.yaml; PROFILE_SCALE is
# the corpus scale it trains on; PREDICT_TRAIN how many train samples the LLM predicts for the CRS;
# PROFILE_EPISODES the simulated shoppers per policy and PROFILE_REPLAY_DIALOGUES the test dialogues replayed (0: all).
PROFILE=${PROFILE:-default}
case "$PROFILE" in
  default) SUFFIX=""; CRS_CONFIG=configs/crs_default.yaml; PROFILE_SCALE=small; PREDICT_TRAIN=2000
    PROFILE_EPISODES=20; PROFILE_REPLAY_DIALOGUES=0 ;;
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
