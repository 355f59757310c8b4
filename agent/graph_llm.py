"""Graph 1, the fine-tuned LLM in control ("CRS assisting LLM" at run time).

    START → receive ─┬─ the user accepts the latest item → close → confirm → END  (as in graph 2)
                     └─ otherwise → controller ...

            controller ─┬─ tool calls ──────────→ tools → absorb → controller
                        ├─ no call (a reply) ───→ finish → END
                        └─ no parsable output, over the step bound, or a
                           reply that recommends nothing after a refused
                           question or past the question bound → fallback → END

The controller is the LLM bound to the CRS tools (tools/crs_tools.py); a ToolNode runs its calls
(arguments that do not validate come back to it as an error message); `absorb` keeps the tool
results in the typed state. When the controller stops calling tools, `finish` has the reply written:
with a `writer` (an llm.inference.LLM, the instruction-tuned LLM; PolicyConfig.reply_writer "llm")
by its response skill from the attribute values or the item the CRS tools gave, as the paper's
CRS-assisted response generation does. The controller's own text is then not generated past the
first tokens that show it is no tool call (so text before a tool call, which the traces never teach,
counts as a reply), and the written reply takes its place in the history. Without a writer, the
controller's own text is the reply. The fallback (logged) lets the CRS policy finish the turn alone. Past
PolicyConfig.max_questions (or when no new attribute is left) select_attribute_to_ask refuses and
says to recommend; a reply that still recommends nothing goes to the fallback.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode

from tools.crs_tools import make_crs_tools
from tools.dialogue import questions_asked, turn_record, utterances
from tools.llm_tools import make_llm_tools
from uneed.corpus import Item
from uneed.schema import STAFF, STAFF_ASK, STAFF_EXPLAIN, STAFF_RECOMMEND, USER

from .crs_policy import CRSPolicy, present
from .nodes import message_text, receive
from .policy import PolicyConfig, accepts_recommendation, call_tool, event, needs_of
from .prompts import controller_messages
from .state import AgentState

log = logging.getLogger(__name__)


def _turn_tool_messages(state: Mapping[str, Any], turn: bool = False) -> list[ToolMessage]:
    """The tool results that answer the controller's latest calls (turn=True: all of this user turn)."""
    out = []
    for m in reversed(state.get("messages", [])):
        if isinstance(m, HumanMessage):
            break
        if isinstance(m, ToolMessage):
            out.append(m)
        elif not turn:
            break
    return list(reversed(out))


def build_llm_graph(chat_model: Any, crs: Any, catalog: Mapping[str, Item], cfg: PolicyConfig | None = None,
                    attributes: set[str] | None = None, checkpointer: Any = None, writer: Any = None):
    cfg = cfg or PolicyConfig()
    tools = make_crs_tools(crs, catalog, attributes, max_questions=cfg.max_questions)
    if writer is not None and "reply_text" in type(chat_model).model_fields:
        # the controller's reply text is not used: its generation stops once it is no tool call
        chat_model = chat_model.model_copy(update={"reply_text": False})
    write_reply = {t.name: t for t in make_llm_tools(writer, catalog)}["llm_respond"] if writer is not None else None
    controller_model = chat_model.bind_tools(tools)
    crs_only = CRSPolicy(crs, catalog, cfg)

    def controller(state: Mapping[str, Any]) -> dict[str, Any]:
        message = controller_model.invoke(controller_messages(state))
        calls = [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]
        row = event("controller", calls=calls, text=message_text(message)[:300],
                    invalid=[c.get("error") for c in getattr(message, "invalid_tool_calls", [])])
        return {"messages": [message], "steps": state.get("steps", 0) + (1 if message.tool_calls else 0),
                "events": [row]}

    def fallback_reason(state: Mapping[str, Any]) -> str | None:
        """Why the controller cannot finish this turn itself (None: it can)."""
        last = state["messages"][-1]
        if last.tool_calls:
            return "step bound reached" if state.get("steps", 0) > cfg.max_tool_steps else None
        if getattr(last, "invalid_tool_calls", None) or (write_reply is None and not message_text(last).strip()):
            return "no parsable call or reply"
        if not _turn_tool_messages(state, turn=True):  # the traces teach extract_needs at every user turn
            return "a reply without consulting the CRS tools"
        if (state.get("pending") or {}).get("items"):
            return None
        if questions_asked(state) >= cfg.max_questions and not state.get("recommended"):
            return "question bound reached and nothing recommended"
        if any(m.name == "select_attribute_to_ask" and m.status == "error" for m in _turn_tool_messages(state, turn=True)):
            return "a question was refused and the reply recommends nothing"
        return None

    def route(state: Mapping[str, Any]) -> str:
        if fallback_reason(state):
            return "fallback"
        return "tools" if state["messages"][-1].tool_calls else "finish"

    def absorb(state: Mapping[str, Any]) -> dict[str, Any]:
        update: dict[str, Any] = {"events": [], "needs": {}, "asked": [], "transcript": []}
        pending = dict(state.get("pending") or {"attributes": [], "items": []})
        user_index = max(i for i, t in enumerate(state["transcript"]) if t["speaker"] == USER)
        for m in _turn_tool_messages(state):
            art = m.artifact or {}
            update["events"].append(event("tools", tool=m.name, result=str(m.content)[:500], status=m.status))
            if m.status == "error":
                continue
            if m.name == "extract_needs":
                update["needs"] = needs_of(art.get("tags", []))
                update["transcript"].append({"update": user_index, "tags": art.get("tags", [])})
            elif m.name == "select_attribute_to_ask":
                update["asked"].append(art["attribute"])
                values = art.get("values", [])[:3]
                pending["attributes"] = [f"{art['attribute']}：{v}" for v in values] or [f"{art['attribute']}："]
            elif m.name == "recommend_items":
                ranked = [r["item_id"] for r in art.get("items", [])]
                update["candidates"] = ranked
                pending["items"] = ranked[:1]
        update["pending"] = pending
        return update

    def finish(state: Mapping[str, Any]) -> dict[str, Any]:
        pending = state.get("pending") or {}
        last = state["messages"][-1]
        text = message_text(last).strip()
        events = []
        if write_reply is not None:
            items = list(pending.get("items", []))
            attributes = list(pending.get("attributes", [])) if not items else []
            act = STAFF_RECOMMEND if items else (STAFF_ASK if attributes else STAFF_EXPLAIN)
            content, artifact = call_tool(write_reply, state, attributes=attributes, items=items)
            events.append(event("respond:llm", tool="llm_respond", args={"attributes": attributes, "items": items},
                                result=content))
            if not artifact["reply"].strip():
                log.warning("graph 1: the LLM wrote no reply (nothing parsable): the CRS writes this one")
                update = crs_only.respond({**state, "pending": {"attributes": attributes, "items": items, "act": act}})
                update["events"] = events + [event("fallback", reason="the LLM wrote no reply")] + update["events"]
                update["recommended"] = items
                # the reply takes the place of the controller's cut-off text in the history it reads next turn
                update["messages"] = [AIMessage(content=update["reply"], id=last.id)]
                return update
            reply = present(artifact["reply"], items)
        else:
            mentioned = [i for i in state.get("candidates", []) if i in text]
            items = mentioned or list(pending.get("items", []))
            reply = text if mentioned or not items else present(text, items)
            attributes = list(pending.get("attributes", [])) if not items else []
            act = STAFF_RECOMMEND if items else (STAFF_ASK if attributes else STAFF_EXPLAIN)
        asked = sorted({a.partition("：")[0] for a in attributes})
        update = {"reply": reply, "recommended": items,
                  "transcript": [turn_record(STAFF, reply, act, tags=attributes, asked=asked, items=items)],
                  "pending": {"attributes": [], "items": []}, "events": events + [event("finish", reply=reply)]}
        if write_reply is not None:  # the written reply replaces the controller's cut-off text in the history
            update["messages"] = [AIMessage(content=reply, id=last.id)]
        return update

    def fallback(state: Mapping[str, Any]) -> dict[str, Any]:
        last = state["messages"][-1]
        reason = fallback_reason(state)
        log.warning("graph 1 fallback (%s): the CRS policy finishes this turn", reason)
        # Calls left unanswered would make the next prompt malformed: answer them as skipped.
        skipped = [ToolMessage(content=f"skipped: {reason}", tool_call_id=c["id"], name=c["name"], status="error")
                   for c in last.tool_calls]
        update = crs_only.run_turn(state)
        update["messages"] = skipped + list(update.get("messages", []))
        update["events"] = [event("fallback", reason=reason)] + list(update.get("events", []))
        return update

    graph = StateGraph(AgentState)
    graph.add_node("receive", receive)
    graph.add_node("controller", controller)
    graph.add_node("tools", ToolNode(tools, handle_tool_errors=True))
    graph.add_node("absorb", absorb)
    graph.add_node("finish", finish)
    graph.add_node("fallback", fallback)
    graph.add_node("close", crs_only.close)
    graph.add_node("confirm", crs_only.respond)
    graph.add_edge(START, "receive")

    def after_receive(state: Mapping[str, Any]) -> str:
        """Close on an acceptance; understanding is asked only then, and a new need in the turn is no acceptance."""
        if not accepts_recommendation(state):
            return "controller"
        return "controller" if needs_of(crs.understand([utterances(state)])[0]) else "close"

    graph.add_conditional_edges("receive", after_receive, {"close": "close", "controller": "controller"})
    graph.add_edge("close", "confirm")
    graph.add_edge("confirm", END)
    graph.add_conditional_edges("controller", route, {"tools": "tools", "finish": "finish", "fallback": "fallback"})
    graph.add_edge("tools", "absorb")
    graph.add_edge("absorb", "controller")
    graph.add_edge("finish", END)
    graph.add_edge("fallback", END)
    return graph.compile(checkpointer=checkpointer, name="llm_in_control")
