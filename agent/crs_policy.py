"""The CRS in control (section 3.5 at run time): understand → ask or recommend → respond, calling
the LLM as a tool at each step when one is given. Its outputs enter the CRS inputs exactly as in
training: as the `[LLM]` segment of understanding, elicitation and generation, and, for
recommendation, as the item whose embedding is fused into the user representation (equation 4).

Each step is a node of graph 2 (agent/graph_crs.py); `run_turn` chains them without the LLM for
graph 1's fallback.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool

from tools.crs_tools import OFFER_POOL, offered_values, recommend_scope
from tools.dialogue import need_pairs, turn_record, utterances
from uneed.corpus import Item
from uneed.schema import STAFF, STAFF_ASK, STAFF_EXPLAIN, STAFF_RECOMMEND, USER

from .policy import PolicyConfig, call_tool, decide, event, last_recommended, needs_of
from .state import apply_update

log = logging.getLogger(__name__)
MAX_OFFERED_IN_QUESTION = 3


class CRSPolicy:
    def __init__(self, crs: Any, catalog: Mapping[str, Item], cfg: PolicyConfig | None = None,
                 llm_tools: list[BaseTool] | None = None):
        self.crs = crs
        self.catalog = catalog
        self.cfg = cfg or PolicyConfig()
        self.llm = {t.name: t for t in llm_tools or []}
        if self.llm and not getattr(crs.config, "use_llm", False):
            log.warning("this CRS was trained without LLM inputs: the LLM's outputs are shown in the trace but "
                        "do not enter its inputs (train it with --llm-predictions for graph 2)")

    def _llm(self, name: str, state: Mapping[str, Any], **args: Any) -> tuple[Any, dict | None]:
        if name not in self.llm:
            return None, None
        content, artifact = call_tool(self.llm[name], state, **args)
        return artifact, event(name.replace("llm_", "") + ":llm", tool=name, args=args, result=content)

    # --------------------------------------------------------------------------------- the steps
    def understand(self, state: Mapping[str, Any]) -> dict[str, Any]:
        events = []
        llm_out, ev = self._llm("llm_understand", state)
        if ev:
            events.append(ev)
        llm_tags = llm_out["tags"] if llm_out else None
        tags = self.crs.understand([utterances(state)], llm_predictions=[llm_tags] if llm_tags is not None else None,
                                   domains=[state.get("category", "")])[0]
        events.append(event("understand", tool="crs.understand", args={"llm": llm_tags}, result=tags))
        index = len(state.get("transcript", [])) - 1
        return {"transcript": [{"update": index, "tags": tags}], "needs": needs_of(tags), "events": events}

    def decide(self, state: Mapping[str, Any]) -> str:
        turns = state.get("transcript", [])
        return decide(state, self.cfg, turns[-1].get("tags", []) if turns else [])

    def elicit(self, state: Mapping[str, Any]) -> dict[str, Any]:
        events = []
        llm_out, ev = self._llm("llm_elicit", state)
        if ev:
            events.append(ev)
        llm_keys = llm_out["attributes"] if llm_out else None
        keys = self.crs.elicit([utterances(state)], [need_pairs(state)],
                               llm_predictions=[llm_keys] if llm_keys is not None else None,
                               domains=[state.get("category", "")])[0]
        done = set(state.get("asked", [])) | set((state.get("needs") or {}).keys())
        attribute = next((k for k in keys if k not in done), None)
        if attribute is None:
            events.append(event("elicit", tool="crs.elicit", args={"llm": llm_keys}, result=keys,
                                note="no attribute left to ask: recommending instead"))
            update = self.recommend(state)
            update["events"] = events + update["events"]
            return update
        pool = self.crs.recommend([utterances(state)], [need_pairs(state)], [state.get("behaviours", [])],
                                  k=OFFER_POOL, exclude=[state.get("rejected", [])], **recommend_scope(state))[0]
        values = offered_values(attribute, [s.item_id for s in pool], self.catalog)[:MAX_OFFERED_IN_QUESTION]
        attributes = [f"{attribute}：{v}" for v in values] or [f"{attribute}："]
        events.append(event("elicit", tool="crs.elicit", args={"llm": llm_keys}, result={"suggested": keys,
                                                                                          "ask": attributes}))
        return {"asked": [attribute], "pending": {"attributes": attributes, "items": []}, "events": events}

    def close(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The user accepted the latest recommendation: the reply is about that item, nothing new."""
        items = last_recommended(state)
        return {"pending": {"attributes": [], "items": items, "act": STAFF_EXPLAIN},
                "events": [event("close", accepted=items)]}

    def recommend(self, state: Mapping[str, Any]) -> dict[str, Any]:
        events = []
        ctx, needs, behaviours = [utterances(state)], [need_pairs(state)], [state.get("behaviours", [])]
        banned = [list(state.get("rejected", [])) + list(state.get("recommended", []))]
        scope = recommend_scope(state)  # the thread's category, its seller's items first
        pool = self.crs.recommend(ctx, needs, behaviours, k=self.cfg.candidate_k, exclude=banned, **scope)[0]
        candidates = [s.item_id for s in pool]
        llm_item = None
        if candidates:
            llm_out, ev = self._llm("llm_recommend", state, candidates=candidates)
            if ev:
                events.append(ev)
            llm_item = llm_out["item_id"] if llm_out else None
        ranked = self.crs.recommend(ctx, needs, behaviours, k=self.cfg.recommend_k, exclude=banned,
                                    llm_items=[llm_item] if llm_item else None, **scope)[0]
        items = [s.item_id for s in ranked]
        events.append(event("recommend", tool="crs.recommend", args={"llm_item": llm_item, "exclude": banned[0]},
                            result=[{"item_id": s.item_id, "score": round(s.score, 3)} for s in ranked]))
        shown = items[:1]
        return {"candidates": items, "recommended": shown, "pending": {"attributes": [], "items": shown},
                "events": events}

    def respond(self, state: Mapping[str, Any]) -> dict[str, Any]:
        pending = state.get("pending") or {"attributes": [], "items": []}
        attributes, items = list(pending.get("attributes", [])), list(pending.get("items", []))
        events = []
        llm_out, ev = self._llm("llm_respond", state, attributes=attributes, items=items)
        if ev:
            events.append(ev)
        llm_reply = llm_out["reply"] if llm_out else None
        text = self.crs.respond([utterances(state)], [attributes], [items],
                                llm_predictions=[llm_reply] if llm_reply is not None else None)[0]
        reply = present(text, items)
        events.append(event("respond", tool="crs.respond", args={"attributes": attributes, "items": items,
                                                                 "llm": llm_reply}, result=reply))
        act = pending.get("act") or (STAFF_RECOMMEND if items else STAFF_ASK)
        asked = sorted({a.partition("：")[0] for a in attributes})
        return {"messages": [AIMessage(content=reply)], "reply": reply, "events": events,
                "transcript": [turn_record(STAFF, reply, act, tags=attributes, asked=asked, items=items)],
                "pending": {"attributes": [], "items": []}}

    # ------------------------------------------------------------------------- without a graph
    def run_turn(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """understand (if the user turn is not understood yet) → decide → ask/recommend → respond,
        as one update (graph 1's fallback)."""
        merged: dict[str, Any] = dict(state)
        update: dict[str, Any] = {}

        def step(part: dict[str, Any]) -> None:
            nonlocal merged
            merged = apply_update(merged, part)
            for key, value in part.items():
                if key in ("transcript", "events", "messages", "asked", "recommended", "rejected"):
                    update[key] = list(update.get(key, [])) + list(value)
                elif key == "needs":
                    update[key] = {**update.get(key, {}), **value}
                else:
                    update[key] = value

        turns = merged.get("transcript", [])
        if turns and turns[-1]["speaker"] == USER and not turns[-1].get("tags"):
            step(self.understand(merged))
        step({"ask": self.elicit, "recommend": self.recommend, "close": self.close}[self.decide(merged)](merged))
        step(self.respond(merged))
        return update


def present(text: str, items: list[str]) -> str:
    """A recommendation reply names the item it links to, as a shop chat shows the link card."""
    if not items:
        return text
    return f"【商品 {'、'.join(items)}】{text}"
