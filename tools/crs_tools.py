"""The trained CRS as LangChain tools, for the LLM controller of graph 1 ("CRS assisting LLM").

Each tool has a pydantic argument schema (what the model may pass) plus the conversation state,
injected by LangGraph's ToolNode and invisible to the model. Each returns (content, artifact): the
content is the text the controller reads, the artifact the structured result the graph keeps.
Bad arguments raise; ToolNode turns that into an error message for the controller.
"""
from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Mapping, Optional

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.prebuilt import InjectedState
from pydantic import BaseModel, Field

from uneed.corpus import LEAF_RELATION, RELATION_ALIASES, Item
from uneed.schema import USER

from .dialogue import latest_user_text, need_pairs, questions_asked, to_utterance, turn_record, utterances

OFFER_POOL = 50  # items whose knowledge suggests the values a question offers
MAX_OFFERED = 4


class ExtractNeedsArgs(BaseModel):
    utterance: Optional[str] = Field(None, max_length=2000,
                                     description="用户的话，默认最近一句")
    state: Annotated[dict, InjectedState]


class SelectAttributeArgs(BaseModel):
    attribute: Optional[str] = Field(None, max_length=20,
                                     description="要问的属性，默认由CRS选")
    state: Annotated[dict, InjectedState]


class RecommendArgs(BaseModel):
    k: int = Field(3, ge=1, le=50, description="商品数")
    candidates: Optional[list[str]] = Field(None, max_length=100, description="只在这些商品id中排序")
    exclude: Optional[list[str]] = Field(None, max_length=200, description="不要推荐的商品id")
    state: Annotated[dict, InjectedState]


class LookupItemArgs(BaseModel):
    # rank: the short way for a small controller (copying a 32-character id was where it broke most)
    rank: Optional[int] = Field(None, ge=1, le=50, description="recommend_items 结果中的序号（1 为第一个）")
    item_id: Optional[str] = Field(None, min_length=1, max_length=40, description="商品id（不给序号时）")
    state: Annotated[dict, InjectedState]


ITEM_FACTS_SHOWN = 3  # knowledge facts per item in a ranking: enough to choose, short enough for a small model


def format_ranking(item_ids: list[str], items: Mapping[str, Item]) -> str:
    """What the controller reads after recommend_items (the controller traces use the same text)."""
    def facts(item_id: str) -> str:
        item = items.get(item_id)
        return (item.text(max_relations=ITEM_FACTS_SHOWN) if item is not None else "") or "暂无商品信息"

    return "\n".join(f"{n}. {i}：{facts(i)}" for n, i in enumerate(item_ids, start=1))


def format_needs(tags: list[str], state: Mapping) -> str:
    """What the controller reads after extract_needs (the traces use the same text): the needs found,
    then how far the conversation has got. The counts sit right before the controller's next choice
    (ask again or recommend) because a small model uses what is near far more easily than the state
    line at the top of its prompt."""
    found = "；".join(tags) if tags else "无"
    return (f"识别到的需求：{found}。已问属性{len(state.get('asked', []))}个，"
            f"已推荐{len(state.get('recommended', []))}次")


def format_attribute_choice(attribute: str, values: list[str], suggestions: list[str]) -> str:
    """What the controller reads after select_attribute_to_ask (the traces use the same text)."""
    offered = f"（可选：{'、'.join(values)}）" if values else ""
    return f"询问属性：{attribute}{offered}；CRS建议：{'、'.join(suggestions) or '无'}"


def knowledge_text(item_id: str, items: Mapping[str, Item]) -> str:
    item = items.get(item_id)
    if item is None:
        raise ValueError(f"unknown item id {item_id!r}")
    return item.text() or "暂无商品信息"


def offered_values(attribute: str, item_ids: list[str], items: Mapping[str, Item]) -> list[str]:
    """The most common values of `attribute` among the items the CRS would recommend now."""
    relation = RELATION_ALIASES.get(attribute, attribute)
    counts: Counter = Counter()
    for item_id in item_ids:
        item = items.get(item_id)
        if item is not None:
            counts.update(item.knowledge.get(relation, []))
    return [v for v, _ in counts.most_common(MAX_OFFERED)]


def named_leaves(state: Mapping) -> list[str]:
    """The kinds of item the shopper named so far (the values of their 品类 needs, e.g. ['热水器'])."""
    return [v for k, v in need_pairs(state) if v and RELATION_ALIASES.get(k, k) == LEAF_RELATION]


def recommend_scope(state: Mapping) -> dict[str, list]:
    """The thread's category (and seller, when known) and the kinds of item the shopper named:
    recommendations stay within them (CRS.recommend). A CRS alone ranked a 冰箱 first for a shopper who
    asked for a 热水器 (docs/shoppers.md of 2026-11-28 08:15)."""
    return {"domains": [state.get("category") or None], "sellers": [state.get("seller") or None],
            "leaves": [named_leaves(state)]}


def make_crs_tools(crs: Any, items: Mapping[str, Item], attributes: set[str] | None = None,
                   max_questions: int | None = None) -> list[BaseTool]:
    """Tools over a loaded `crs.inference.CRS`. `items` holds the catalog's knowledge; `attributes`
    the attribute names a question may be about (None: any); after `max_questions` questions in a
    thread (None: no bound) select_attribute_to_ask refuses, and its error tells the caller to recommend."""

    def extract_needs(utterance: Optional[str] = None, state: dict | None = None):
        context = utterances(state or {})
        text = utterance if utterance is not None else latest_user_text(state or {})
        if not text.strip():
            raise ValueError("nothing to understand: the utterance is empty")
        if not context or context[-1].text != text:
            context.append(to_utterance(turn_record(USER, text)))
        tags = crs.understand([context], domains=[(state or {}).get("category", "")])[0]
        return format_needs(tags, state or {}), {"tags": tags}

    def select_attribute_to_ask(attribute: Optional[str] = None, state: dict | None = None):
        state = state or {}
        if max_questions is not None and questions_asked(state) >= max_questions:
            raise ValueError(f"{questions_asked(state)} questions asked already (the bound is {max_questions}): "
                             "call recommend_items instead")
        if attribute is not None and attributes is not None and attribute not in attributes:
            raise ValueError(f"unknown attribute {attribute!r}; known: {'、'.join(sorted(attributes))}")
        suggestions = crs.elicit([utterances(state)], [need_pairs(state)], domains=[state.get("category", "")])[0]
        asked = set(state.get("asked", []))
        fresh = [a for a in suggestions if a not in asked]
        note = ""
        if attribute in asked:  # a shopper is never asked the same thing twice: the CRS's next choice instead
            if not fresh:
                raise ValueError(f"{attribute!r} was asked already and the CRS suggests no other attribute: "
                                 "call recommend_items")
            note, attribute = f"{attribute}已问过，改问{fresh[0]}。", fresh[0]
        chosen = attribute or (fresh or suggestions or [None])[0]
        if chosen is None:
            raise ValueError("the CRS suggests no attribute; pass one explicitly")
        pool = crs.recommend([utterances(state)], [need_pairs(state)], [state.get("behaviours", [])],
                             k=OFFER_POOL, exclude=[state.get("rejected", [])], **recommend_scope(state))[0]
        values = offered_values(chosen, [s.item_id for s in pool], items)
        return (note + format_attribute_choice(chosen, values, suggestions),
                {"attribute": chosen, "values": values, "suggestions": suggestions})

    def recommend_items(k: int = 3, candidates: Optional[list[str]] = None, exclude: Optional[list[str]] = None,
                        state: dict | None = None):
        state = state or {}
        unknown = [c for c in candidates or [] if c not in items]
        if candidates is not None and len(unknown) == len(candidates):
            raise ValueError(f"none of the candidates is a known item id: {candidates[:5]}")
        banned = list(dict.fromkeys(list(state.get("rejected", [])) + list(exclude or [])))
        ranked = crs.recommend([utterances(state)], [need_pairs(state)], [state.get("behaviours", [])],
                               candidates=[candidates] if candidates else None, k=k, exclude=[banned],
                               **recommend_scope(state))[0]
        if not ranked:
            return "没有可推荐的商品", {"items": []}
        return (format_ranking([s.item_id for s in ranked], items),
                {"items": [{"item_id": s.item_id, "score": s.score} for s in ranked]})

    def lookup_item(rank: Optional[int] = None, item_id: Optional[str] = None, state: dict | None = None):
        latest = list((state or {}).get("candidates", []))
        if rank is not None:
            if rank > len(latest):
                raise ValueError(f"rank {rank} is past the latest ranking ({len(latest)} items"
                                 f"{'' if latest else '; call recommend_items first'})")
            item_id = latest[rank - 1]
        if not item_id:
            raise ValueError("give rank (the position in recommend_items' result) or item_id")
        if item_id not in items:  # name the ids it may have meant, so the caller can correct itself
            ranked = "、".join(latest[:5]) or "none yet (call recommend_items first)"
            raise ValueError(f"unknown item id {item_id!r}; the latest recommended ids: {ranked}")
        return f"{item_id}：{knowledge_text(item_id, items)}", {"item_id": item_id}

    specs = [
        (extract_needs, ExtractNeedsArgs, "识别用户最新一句话中的需求（属性和属性值）"),
        (select_attribute_to_ask, SelectAttributeArgs,
         "选择下一步要询问的属性，并给出可列举的候选值"),
        (recommend_items, RecommendArgs,
         "根据已知需求和浏览行为，从商品向量索引推荐商品"),
        (lookup_item, LookupItemArgs, "查询商品的属性知识"),
    ]
    return [StructuredTool.from_function(fn, name=fn.__name__, description=desc, args_schema=schema,
                                         response_format="content_and_artifact") for fn, schema, desc in specs]

