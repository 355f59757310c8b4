"""Request and response bodies of the Agent Protocol routes (the subset the langgraph-sdk client calls),
as pydantic models: FastAPI validates every request against them and the OpenAPI page shows them.

Unknown request fields are ignored (the client sends options this server has no use for, such as
stream_subgraphs or durability); a field it does not support with a value that would change the
meaning of a run (another stream mode, multitask strategy or a resume command) is a 422.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGE_CHARS = 2000  # a longer user message is a 413
STREAM_MODES = ("values", "updates")


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorBody(BaseModel):
    message: str = Field(description="What went wrong, in one line.")
    status: int


# ------------------------------------------------------------------------------------------ threads
class ThreadCreate(Body):
    thread_id: Optional[str] = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$",
                                     description="Default: a new UUID.")
    metadata: dict[str, Any] = Field(default_factory=dict, description=(
        "Free metadata; `category` (美妆行业, 手机行业, 服装行业, 鞋类行业, 大家电行业; default 美妆行业) picks the domain, "
        "`user_id` a corpus user whose behaviours the recommender reads, `graph_id` (llm | crs) ties the thread to a graph."))
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadPatch(Body):
    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadSearch(Body):
    metadata: dict[str, Any] = Field(default_factory=dict, description="Threads whose metadata has these key/values.")
    status: Optional[Literal["idle", "busy", "error"]] = None
    ids: Optional[list[str]] = None
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class Thread(BaseModel):
    thread_id: str
    created_at: str
    updated_at: str
    metadata: dict[str, Any]
    status: Literal["idle", "busy", "error"]
    values: Optional[dict[str, Any]] = None
    interrupts: dict[str, list] = Field(default_factory=dict)


class CheckpointRef(BaseModel):
    thread_id: str
    checkpoint_ns: str = ""
    checkpoint_id: Optional[str] = None
    checkpoint_map: Optional[dict[str, Any]] = None


class ThreadState(BaseModel):
    values: dict[str, Any]
    next: list[str]
    checkpoint: CheckpointRef
    metadata: dict[str, Any]
    created_at: Optional[str]
    parent_checkpoint: Optional[CheckpointRef]
    tasks: list[dict[str, Any]] = Field(default_factory=list)
    interrupts: list[dict[str, Any]] = Field(default_factory=list)


class HistoryRequest(Body):
    limit: int = Field(10, ge=1, le=1000)
    before: Optional[Union[str, CheckpointRef]] = None
    metadata: Optional[dict[str, Any]] = None


# --------------------------------------------------------------------------------------------- runs
class InputMessage(Body):
    role: Optional[Literal["user", "human"]] = None
    type: Optional[Literal["user", "human"]] = None
    content: str = Field(description=f"The user's message (at most {MAX_MESSAGE_CHARS} characters).")


class RunInput(Body):
    messages: list[InputMessage] = Field(min_length=1, max_length=1, description="One user message per run.")


class RunCreate(Body):
    assistant_id: str = Field(description="llm (the LLM in control) or crs (the CRS in control).")
    input: RunInput
    metadata: dict[str, Any] = Field(default_factory=dict)
    config: Optional[dict[str, Any]] = None
    stream_mode: Union[Literal["values", "updates"], list[Literal["values", "updates"]]] = "values"
    multitask_strategy: Literal["reject", "enqueue"] = Field(
        "reject", description="A run on a busy thread: reject (409) or wait for the thread (enqueue).")
    if_not_exists: Literal["reject", "create"] = "reject"
    command: None = Field(None, description="Not supported: these graphs never interrupt.")

    def modes(self) -> list[str]:
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else list(self.stream_mode)
        return list(dict.fromkeys(modes)) or ["values"]


# ----------------------------------------------------------------------------------------- assistants
class Assistant(BaseModel):
    assistant_id: str
    graph_id: str
    name: str
    description: str
    config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    created_at: str
    updated_at: str


class AssistantSearch(Body):
    graph_id: Optional[str] = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(10, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class Item(BaseModel):
    item_id: str
    seller_id: str
    knowledge: dict[str, list[str]]
    text: str


class Health(BaseModel):
    ok: bool
