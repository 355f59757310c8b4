"""The fine-tuned LLM as LangChain tools, for the CRS-controlled graph 2 ("LLM assisting CRS").

The CRS policy calls these; their outputs become the `[LLM]` segments of the CRS inputs and, for
recommendation, the item whose embedding enters the user representation (equation 4).
"""
from __future__ import annotations

from typing import Annotated, Any, Mapping, Optional

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import InjectedState
from pydantic import BaseModel, Field

from uneed.corpus import Item

from .dialogue import need_pairs, utterances


class LLMUnderstandArgs(BaseModel):
    state: Annotated[dict, InjectedState]


class LLMElicitArgs(BaseModel):
    state: Annotated[dict, InjectedState]


class LLMRecommendArgs(BaseModel):
    candidates: list[str] = Field(..., min_length=1, max_length=20, description="至多20个候选商品id (A-T)")
    state: Annotated[dict, InjectedState]


class LLMRespondArgs(BaseModel):
    attributes: list[str] = Field(default_factory=list, description="回复要询问的属性标签，如 '价位：'")
    items: list[str] = Field(default_factory=list, description="回复要介绍的商品id")
    state: Annotated[dict, InjectedState]


def make_llm_tools(llm: Any, catalog: Mapping[str, Item]) -> list[BaseTool]:
    """Tools over a loaded `llm.inference.LLM`; samples are built with `llm.inference.make_sample`.
    `catalog` holds the items' knowledge (the candidate texts of the recommendation prompt)."""
    from llm.inference import make_sample

    def llm_understand(state: dict | None = None):
        state = state or {}
        context = utterances(state)
        if not context:
            raise ValueError("nothing to understand: the conversation is empty")
        sample = make_sample("understand", context[:-1], context[-1], domain=state.get("category", ""))
        tags = llm.understand([sample], catalog)[0]
        return "；".join(tags) or "无", {"tags": tags}

    def llm_elicit(state: dict | None = None):
        state = state or {}
        sample = make_sample("elicit", utterances(state), needs=need_pairs(state), domain=state.get("category", ""))
        keys = llm.elicit([sample], catalog)[0]
        return "；".join(keys) or "无", {"attributes": keys}

    def llm_recommend(candidates: list[str], state: dict | None = None):
        state = state or {}
        known = [c for c in candidates if c in catalog]
        if not known:
            raise ValueError(f"none of the candidates is a known item id: {candidates[:5]}")
        sample = make_sample("recommend", utterances(state), needs=need_pairs(state), candidates=known,
                             domain=state.get("category", ""))
        choice = llm.recommend([sample], catalog)[0]
        return (choice or "无"), {"item_id": choice}

    def llm_respond(attributes: Optional[list[str]] = None, items: Optional[list[str]] = None,
                    state: dict | None = None):
        state = state or {}
        sample = make_sample("respond", utterances(state), needs=need_pairs(state), asked=list(attributes or []),
                             items=list(items or []), domain=state.get("category", ""))
        text = llm.respond([sample], catalog)[0]
        return text, {"reply": text}

    specs = [
        (llm_understand, LLMUnderstandArgs, "LLM：识别最新一句话中的属性和属性值。"),
        (llm_elicit, LLMElicitArgs, "LLM：选择下一步要询问的属性。"),
        (llm_recommend, LLMRecommendArgs, "LLM：从至多20个候选商品中选出最合适的一个。"),
        (llm_respond, LLMRespondArgs, "LLM：生成给用户的通俗回复。"),
    ]
    return [StructuredTool.from_function(fn, name=fn.__name__, description=desc, args_schema=schema,
                                         response_format="content_and_artifact") for fn, schema, desc in specs]
