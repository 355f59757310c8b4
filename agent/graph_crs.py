"""Graph 2, the CRS in control ("LLM assisting CRS" at run time).

    START → receive → understand ─┬─ ask ───────┬→ respond → END
                                  ├─ recommend ─┤
                                  └─ close ─────┘   (the user accepted the latest item)
Each CRS step calls the LLM as a tool first (agent/crs_policy.py).
"""
from __future__ import annotations

from typing import Any, Mapping

from langgraph.graph import END, START, StateGraph

from tools.llm_tools import make_llm_tools
from uneed.corpus import Item

from .crs_policy import CRSPolicy
from .nodes import receive
from .policy import PolicyConfig
from .state import AgentState


def build_crs_graph(crs: Any, llm: Any | None, catalog: Mapping[str, Item], cfg: PolicyConfig | None = None,
                    checkpointer: Any = None):
    policy = CRSPolicy(crs, catalog, cfg, make_llm_tools(llm, catalog) if llm is not None else None)
    graph = StateGraph(AgentState)
    graph.add_node("receive", receive)
    graph.add_node("understand", policy.understand)
    graph.add_node("ask", policy.elicit)
    graph.add_node("recommend", policy.recommend)
    graph.add_node("close", policy.close)
    graph.add_node("respond", policy.respond)
    graph.add_edge(START, "receive")
    graph.add_edge("receive", "understand")
    graph.add_conditional_edges("understand", policy.decide, {"ask": "ask", "recommend": "recommend",
                                                              "close": "close"})
    for node in ("ask", "recommend", "close"):
        graph.add_edge(node, "respond")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer, name="crs_in_control")
