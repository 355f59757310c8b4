"""The CRS's dialogue policy (graph 2, and graph 1's fallback) and the small rules both graphs share.

Ask or recommend (documented rule, configurable): recommend once `min_needs` distinct attributes are
known, or `max_questions` questions have been asked, or the user just turned an item down and
said what else they want, or the CRS suggests no attribute that is not asked or known yet;
otherwise ask. A user turn that answers a recommendation and accepts it closes: the reply confirms the
accepted item, nothing new is recommended. A user turn that follows a recommendation and turns it down
(太贵, 不合适, 有没有别的…, 换一款…) rejects the items of that recommendation: they are never recommended
again in the thread.

Acceptance reads the turn, not substrings: every clause of the turn must consist of acceptance words
(好的, 就这款, 拍了, 谢谢, …) and fillers (亲, 吧, 了, emoticon codes, …) only, so 要流行一点的款式 (行),
运行内存要大一点的, 可以的话便宜点 or 谢谢，能再便宜点吗 are not acceptances; nor is a question, a turn
that leaves (我再看看) or one in which understanding finds a new need. Asking about a variant of the item
(有没有这款的红色, 有别的颜色吗) is not a rejection of it.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from langchain_core.tools import BaseTool

from tools.dialogue import questions_asked
from uneed.schema import STAFF, USER

# Turning the item down whatever else is said, and asking for something else (which may instead be a
# variant of the same item: see is_variant_question).
HARD_NEGATIVE_CUES = ("不要这", "不太好", "不太喜欢", "不太合适", "不合适", "不喜欢", "太贵", "贵了", "有点贵", "超预算",
                      "价格有点高", "好贵", "太大", "太小", "没有我", "不行", "算了", "不想要", "不好看")
SOFT_NEGATIVE_CUES = ("有没有", "还有别", "换一", "换个", "其他", "其它", "别的")
NEGATIVE_CUES = HARD_NEGATIVE_CUES + SOFT_NEGATIVE_CUES
# Words that contain a cue without meaning it (特别的 is not 别的, 不太贵 is no complaint).
NOT_CUES = ("特别", "区别", "分别", "不太贵", "不贵了")
OTHER_ITEM_WORDS = ("别的款", "其他款", "其它款", "别的推荐", "其他推荐", "其它推荐", "换一款", "换个款", "换款", "别家",
                    "别的吗", "其他的吗", "其它的吗", "还有别的", "再推荐", "别的商品", "其他商品")
ITEM_REFERENCES = ("这款", "这个", "这件", "这双", "这台", "这部", "这瓶", "这套", "同款", "它")
VARIANT_WORDS = ("颜色", "色号", "配色", "尺码", "码数", "尺寸", "大码", "小码", "版本", "容量", "内存", "规格",
                 "红色", "黑色", "白色", "蓝色", "粉色", "灰色", "绿色", "黄色", "紫色")


@dataclass
class PolicyConfig:
    min_needs: int = 3  # recommend once this many distinct attributes are known
    max_questions: int = 3  # ... or once this many questions were asked (graph 1: then no tool asks again)
    recommend_k: int = 3  # items shown in one recommendation
    candidate_k: int = 20  # items the LLM chooses among (A-T)
    max_tool_steps: int = 6  # graph 1: tool calls the controller may make in one user turn
    # graph 1: who writes the reply once the controller has decided (called its tools and stopped):
    # "llm", the instruction-tuned LLM's response skill given the CRS's attribute or item (the paper's
    # CRS-assisted response generation; its questions name the asked attribute far more often in replay,
    # README), or "controller", its own free text
    reply_writer: str = "llm"


ACCEPT_WORDS = ("就这款", "就这个", "就这件", "就这双", "就这台", "就这部", "就它", "就要这款", "就要这个", "要这款",
                "要这个", "拍这款", "拍这个", "拍了", "下单了", "下单", "买了", "买这款", "这款不错", "这个不错", "不错",
                "这个可以", "这款可以", "可以的", "可以", "好的", "好滴", "好哒", "好吧", "好", "行", "ok", "谢谢",
                "感谢", "挺好", "满意")
FILLER_CHARS = set("亲嗯哦噢啦吧呀哈啊了那就我的呢嘛哒滴～~!！,，。.、 \t")
EMOTICON = re.compile(r"/:[^\s，。！？,.!?]{1,6}")  # shop-chat emoticon codes: /:^_^ /:801
CLAUSE_BREAK = re.compile(r"[，,。.！!？?；;\s~～]+")
QUESTION = re.compile(r"[？?吗]|^(有没有|能不能|可不可以|是不是|怎么|什么|哪)")


def _without(text: str, words: tuple[str, ...]) -> str:
    for word in words:
        text = text.replace(word, " ")
    return text


def is_acceptance(user_text: str) -> bool:
    """Every clause is acceptance words and fillers only, with at least one acceptance word; no question."""
    text = EMOTICON.sub(" ", user_text.strip().lower())
    if not text.strip() or QUESTION.search(text) or is_rejection(user_text):
        return False
    found = False
    for clause in CLAUSE_BREAK.split(text):
        rest = clause
        for word in sorted(ACCEPT_WORDS, key=len, reverse=True):
            if word in rest:
                found = True
                rest = rest.replace(word, "")
        if any(ch not in FILLER_CHARS for ch in rest):
            return False
    return found


def is_variant_question(user_text: str) -> bool:
    """Asks about a variant of the item just shown (有没有这款的红色, 有别的颜色吗), not for another item."""
    text = _without(user_text, NOT_CUES)
    if any(w in text for w in OTHER_ITEM_WORDS) or any(c in text for c in HARD_NEGATIVE_CUES):
        return False
    return any(w in text for w in VARIANT_WORDS) or any(f"有没有{r}" in text or f"{r}有没有" in text
                                                        for r in ITEM_REFERENCES)


def is_rejection(user_text: str) -> bool:
    text = _without(user_text, NOT_CUES)
    if any(c in text for c in HARD_NEGATIVE_CUES):
        return True
    return any(c in text for c in SOFT_NEGATIVE_CUES) and not is_variant_question(user_text)


def rejected_items(state: Mapping[str, Any], user_text: str) -> list[str]:
    """Items of the latest staff recommendation that this user turn turns down."""
    for turn in reversed(state.get("transcript", [])):
        if turn["speaker"] == STAFF:
            return list(turn.get("items", [])) if turn.get("items") and is_rejection(user_text) else []
    return []


def last_recommended(state: Mapping[str, Any]) -> list[str]:
    """The items of the latest staff turn, if that turn recommended (the one the user now answers)."""
    staff = [t for t in state.get("transcript", []) if t["speaker"] == STAFF]
    return list(staff[-1].get("items", [])) if staff else []


def accepts_recommendation(state: Mapping[str, Any], new_tags: list[str] | None = None) -> bool:
    """The latest user turn accepts the items of the staff turn before it (both graphs then close);
    `new_tags`, what understanding found in the turn: a turn that states a new need is no acceptance."""
    turns = state.get("transcript", [])
    if new_tags is None and turns:
        new_tags = turns[-1].get("tags") or []
    return bool(turns) and turns[-1]["speaker"] == USER and bool(last_recommended(state)) \
        and is_acceptance(turns[-1]["text"]) and not needs_of(new_tags or [])


def decide(state: Mapping[str, Any], cfg: PolicyConfig, new_tags: list[str]) -> str:
    """'close', 'ask' or 'recommend' (see the module docstring)."""
    if accepts_recommendation(state, new_tags):
        return "close"
    known = {k for k, values in (state.get("needs") or {}).items() if values}
    if len(known) >= cfg.min_needs or questions_asked(state) >= cfg.max_questions:
        return "recommend"
    if state.get("rejected") and new_tags and state.get("recommended"):
        return "recommend"
    return "ask"


def needs_of(tags: list[str]) -> dict[str, list[str]]:
    """Valued tags as a needs update; 'key：' (an attribute without value) is not a need."""
    out: dict[str, list[str]] = {}
    for tag in tags:
        key, _, value = tag.partition("：")
        if key and value:
            out.setdefault(key, []).append(value)
    return out


def call_tool(tool: BaseTool, state: Mapping[str, Any], **args: Any) -> tuple[str, Any]:
    """Run a tool the way ToolNode does (state injected), returning (content, artifact)."""
    message = tool.invoke({"name": tool.name, "args": {**args, "state": dict(state)},
                           "id": f"call_{uuid.uuid4().hex[:8]}", "type": "tool_call"})
    return str(message.content), message.artifact


def event(node: str, tool: str | None = None, args: Any = None, result: Any = None, **extra: Any) -> dict:
    row = {"node": node}
    if tool is not None:
        row.update(tool=tool, args=args, result=result)
    row.update(extra)
    return row
