#!/usr/bin/env bash
# Five scripted shoppers, one per category of the embedded corpus, through both graphs of a run:
# every step unabridged (`presales chat` prints each node and tool call when stdin is not a terminal).
#   bash scripts/five_shoppers.sh [RUN] [OUT_FILE]      (defaults: runs/default, docs/shoppers.md)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/default}
OUT=${2:-docs/shoppers.md}
[ -f "$RUN/agent.yaml" ] || { echo "error: $RUN is not a finished run (no agent.yaml): run scripts/run_default.sh first" >&2; exit 2; }
# category|message 1|message 2|...: the last message accepts the item recommended last
SHOPPERS=(
  "美妆行业|我想看看防晒霜，预算二百五十上下|干性皮肤|要保湿滋润的|好的，就这款吧"
  "手机行业|游戏手机买哪款好呢，不要曲面屏|想要8g运存的|红米的|好的，就这款吧"
  "服装行业|推荐一款薄款的牛仔裤，女生的|平时穿M|要修身的|好的，就这款吧"
  "鞋类行业|想买双篮球鞋，男款|200块以内吧|要缓震的|好的，就这款吧"
  "大家电行业|想买个热水器，不要智能的|800左右|家里爸妈用|好的，就这款吧"
)
TMP=$(mktemp "${OUT}.XXXXXX")  # written whole, then moved: a failure leaves the old file
WORK=$(mktemp -d)              # the threads database of these conversations, and the models' log lines
trap 'rm -f "$TMP"; rm -rf "$WORK"' EXIT
{
  echo "# Five scripted shoppers through both graphs"
  echo
  echo "Run \`$RUN\`, made by \`bash scripts/five_shoppers.sh $RUN $OUT\` on $(date -u +%Y-%m-%d). Every step as"
  echo "\`presales chat\` prints it, nothing left out."
  for shopper in "${SHOPPERS[@]}"; do
    IFS='|' read -r category messages <<< "$shopper"
    for graph in crs llm; do
      echo
      echo "## $category, graph $([ $graph = llm ] && echo "1 (the LLM in control)" || echo "2 (the CRS in control)")"
      echo
      echo '```'
      tr '|' '\n' <<< "$messages" | presales chat --graph "$graph" --run "$RUN" --category "$category" \
          --db "$WORK/threads.sqlite" 2>> "$WORK/log" || { cat "$WORK/log" >&2; exit 1; }
      echo '```'
    done
  done
} > "$TMP"
mv "$TMP" "$OUT"
echo "wrote $OUT"
