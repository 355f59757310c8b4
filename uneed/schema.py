"""Pydantic models of the U-NEED release files, field for field as in the public samples.

Field-level rules (types, the six act tags, the two sender types) live here; rules that span
fields or files (span offsets, increasing seq_no, known item ids) live in `uneed.validate`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

USER = "用户"
STAFF = "客服"
SENDER_TYPES = (USER, STAFF)

USER_NEED = "用户需求"
STAFF_ASK = "系统提问"
USER_ANSWER = "用户回答"
STAFF_RECOMMEND = "系统推荐"
STAFF_EXPLAIN = "系统解释"
USER_FEEDBACK = "用户反馈"
ACT_TAGS = (USER_NEED, STAFF_ASK, USER_ANSWER, STAFF_RECOMMEND, STAFF_EXPLAIN, USER_FEEDBACK)

# The five top categories of the release (domain field) and their English names in the paper.
DOMAINS = {
    "美妆行业": "Beauty",
    "手机行业": "Phones",
    "服装行业": "Fashion",
    "鞋类行业": "Shoes",
    "大家电行业": "Appliances",
}

LINK_ONLY = "仅发送商品链接"  # what a staff turn says when it only sends an item link
SPLITS = ("train", "valid", "test")

SenderType = Literal["用户", "客服"]
ActTag = Literal["用户需求", "系统提问", "用户回答", "系统推荐", "系统解释", "用户反馈"]


class Attribute(BaseModel):
    """One annotated (attribute, value) span; an asked attribute without value is ("", -1, -1)."""

    model_config = ConfigDict(extra="allow")
    key: str
    value: str
    start: int
    exclusive_end: int

    @property
    def tag(self) -> str:
        """The 'key：value' string that understanding metrics compare."""
        return f"{self.key}：{self.value}"


class Turn(BaseModel):
    model_config = ConfigDict(extra="allow")
    seq_no: int
    time: str
    sender_type: SenderType
    send_content: str
    act_tag: ActTag
    attributes: list[Attribute] = Field(default_factory=list)
    rec_item_id: list[str] = Field(default_factory=list)
    rec_item_info: list[str] = Field(default_factory=list)
    # Added by the authors in preprocessing: 20 candidate ids per recommended item; may be absent.
    rec_item_candidates: list[list[str]] | None = None

    @property
    def is_user(self) -> bool:
        return self.sender_type == USER


class Dialogue(BaseModel):
    model_config = ConfigDict(extra="allow")
    domain: str
    sid: str
    sellerid: str
    userid: str
    ds: str
    dialogue: list[Turn]


class KnowledgeTuple(BaseModel):
    """One row of item_kg.txt."""

    item_id: str
    seller_id: str
    relation: str
    value: str


class UserAction(BaseModel):
    """One row of user_action.txt."""

    seller_id: str
    user_id: str
    item_id: str
    actime: str
    action_id: str


KG_HEADER = ("item_id_encrypt", "seller_id_encrypt", "relation_name", "value")
ACTION_HEADER = ("seller_id_encrypt", "user_id_encrypt", "item_id_encrypt", "actime", "action_id")
