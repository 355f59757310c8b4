"""Controller traces: the corpus dialogues replayed as graph-1 conversations with gold tool calls.

Each user block (consecutive user turns, one message) is answered the way the staff did:

    AI: extract_needs()                      → Tool: the block's gold tags
    staff asked (系统提问 with an attribute)  → AI: select_attribute_to_ask() (the CRS chooses)
                                               → Tool: the staff's attribute and the values they listed
                                               → AI: the staff question
    staff recommended (系统推荐)             → AI: recommend_items(k=3) → Tool: the gold item first
                                               → AI: lookup_item(rank=1) → Tool: its knowledge
                                               → AI: the staff explanation (or recommendation text;
                                                     none when the staff sent the link alone)
    anything else                            → AI: the staff text

Every AI message is one fine-tuning target, its prompt the messages before it exactly as
`agent.prompts.controller_messages` shows them at run time, with the thread state (needs, asked,
recommended) updated as graph 1 would.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from tools.crs_tools import format_attribute_choice, format_needs, format_ranking
from tools.dialogue import turn_record
from uneed.corpus import Corpus, Item
from uneed.schema import LINK_ONLY, STAFF, STAFF_ASK, STAFF_EXPLAIN, STAFF_RECOMMEND, USER, Dialogue, Turn

from .policy import needs_of
from .prompts import controller_messages
from .state import apply_update, new_thread_state

ASK, RECOMMEND, REPLY = "ask", "recommend", "reply"
DEFAULT_RECOMMEND_REPLY = "这款很适合您，可以看看哦"


@dataclass
class TraceStep:
    """One controller decision: the messages it sees and the message it should write."""

    messages: list[BaseMessage]
    target: AIMessage
    kind: str  # 'extract' | 'decide' | 'lookup' | 'reply'
    decision: str = ""  # for 'decide' and 'reply' steps: ask | recommend | reply
    attributes: list[str] = field(default_factory=list)  # gold asked attributes (ask decisions)
    domain: str = ""
    key: str = ""


def _blocks(turns: list[Turn]) -> Iterator[tuple[list[Turn], list[Turn]]]:
    """(user block, following staff block) pairs; staff turns before the first user turn are skipped."""
    i = 0
    while i < len(turns) and not turns[i].is_user:
        i += 1
    while i < len(turns):
        users = []
        while i < len(turns) and turns[i].is_user:
            users.append(turns[i])
            i += 1
        staff = []
        while i < len(turns) and not turns[i].is_user:
            staff.append(turns[i])
            i += 1
        yield users, staff


def _call(name: str, args: dict, n: int) -> dict:
    return {"name": name, "args": args, "id": f"call_{n}", "type": "tool_call"}


def dialogue_trace(d: Dialogue, items: Mapping[str, Item], behaviours: list[str], rng: random.Random
                   ) -> Iterator[TraceStep]:
    state: dict[str, Any] = new_thread_state(d.domain, behaviours)
    n = 0
    for block_no, (users, staff) in enumerate(_blocks(d.dialogue)):
        if not staff:
            break
        text = " ".join(t.send_content for t in users)
        tags = list(dict.fromkeys(a.tag for t in users for a in t.attributes))
        state = apply_update(state, {"messages": [HumanMessage(text)], "transcript": [turn_record(USER, text, tags=tags)]})
        key = f"{d.sid}/{block_no}"

        def emit(message: AIMessage, kind: str, **extra: Any) -> TraceStep:
            return TraceStep(controller_messages(state), message, kind, domain=d.domain, key=key, **extra)

        def answer(call: dict, content: str) -> None:
            nonlocal state
            state = apply_update(state, {"messages": [AIMessage("", tool_calls=[call]),
                                                      ToolMessage(content, tool_call_id=call["id"], name=call["name"])]})

        n += 1
        call = _call("extract_needs", {}, n)
        yield emit(AIMessage("", tool_calls=[call]), "extract")
        answer(call, format_needs(tags, state))
        state = apply_update(state, {"needs": needs_of(tags)})

        asks = [t for t in staff if t.act_tag == STAFF_ASK and t.attributes]
        recs = [t for t in staff if t.act_tag == STAFF_RECOMMEND and t.rec_item_id]
        if recs:
            gold = recs[0].rec_item_id[0]
            n += 1
            call = _call("recommend_items", {"k": 3}, n)
            yield emit(AIMessage("", tool_calls=[call]), "decide", decision=RECOMMEND)
            others = [c for c in (recs[0].rec_item_candidates or [[]])[0] if c != gold]
            ranked = [gold] + rng.sample(others, min(2, len(others)))
            answer(call, format_ranking(ranked, items))
            n += 1
            call = _call("lookup_item", {"rank": 1}, n)  # the gold item heads the ranking above
            yield emit(AIMessage("", tool_calls=[call]), "lookup")
            answer(call, f"{gold}：{items[gold].text() if gold in items else '暂无商品信息'}")
            explain = [t.send_content for t in staff if t.act_tag == STAFF_EXPLAIN and not t.attributes]
            said = [t.send_content for t in recs if t.send_content.strip() != LINK_ONLY]
            reply = (explain[-1:] or said[:1] or [""])[0]
            if reply:
                yield emit(AIMessage(reply), "reply", decision=RECOMMEND)
            else:  # the staff sent the link alone: no reply target (one stock sentence as a quarter of all
                # reply targets made the controller answer everything with it); the context keeps one
                reply = DEFAULT_RECOMMEND_REPLY
            state = apply_update(state, {"messages": [AIMessage(reply)], "recommended": [gold],
                                         "transcript": [turn_record(STAFF, reply, STAFF_RECOMMEND, items=[gold])]})
        elif asks:
            keys = list(dict.fromkeys(a.key for t in asks for a in t.attributes))
            values = [a.value for t in asks for a in t.attributes if a.key == keys[0] and a.value]
            n += 1
            # no argument: the CRS's elicitation chooses the attribute (at run time its choice is the tool
            # result; here the staff's). A controller naming the attribute itself chose right 0.174 of the time
            # in the replay of 2026-11-28 05:14, the CRS's first suggestion in the same turns 0.266.
            call = _call("select_attribute_to_ask", {}, n)
            yield emit(AIMessage("", tool_calls=[call]), "decide", decision=ASK, attributes=keys)
            answer(call, format_attribute_choice(keys[0], values, keys))
            reply = " ".join(t.send_content for t in asks)
            yield emit(AIMessage(reply), "reply", decision=ASK)
            asked_tags = [a.tag for t in asks for a in t.attributes]
            state = apply_update(state, {"messages": [AIMessage(reply)], "asked": keys, "transcript": [
                turn_record(STAFF, reply, STAFF_ASK, tags=asked_tags, asked=keys)]})
        else:
            reply = " ".join(t.send_content for t in staff)
            yield emit(AIMessage(reply), "reply", decision=REPLY)
            state = apply_update(state, {"messages": [AIMessage(reply)],
                                         "transcript": [turn_record(STAFF, reply, staff[0].act_tag)]})


def corpus_traces(corpus: Corpus, split: str, seed: int = 0) -> list[TraceStep]:
    rng = random.Random(seed)
    steps: list[TraceStep] = []
    for d in corpus.split(split):
        first_time = d.dialogue[0].time if d.dialogue else None
        behaviours = corpus.user_behaviours(d.userid, before=first_time)
        steps.extend(dialogue_trace(d, corpus.items, behaviours, rng))
    return steps
