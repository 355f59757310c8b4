"""One `TaskSample` per task position of a dialogue (appendix A), shared by the LLM and CRS formats.

    understand  every turn (user or staff) with at least one annotated attribute; target: its tags
    elicit      every 系统提问 turn with attributes; target: the asked attribute keys
    recommend   every recommended item of a 系统推荐 turn; target: the item id, with its 20 candidates
                and the user's behaviours before the turn (implicit needs)
    respond     every staff turn that says more than 仅发送商品链接; target: its text, with the
                attributes it asks and the items it recommends or explains
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ..corpus import Corpus
from ..schema import LINK_ONLY, STAFF_ASK, STAFF_EXPLAIN, USER, Dialogue, Turn

TASKS = ("understand", "elicit", "recommend", "respond")
MAX_BEHAVIOURS = 50
# A 系统解释 turn explains the latest recommendation if it came within this many turns.
EXPLAIN_WINDOW = 3


@dataclass
class Utterance:
    """A turn as the formats need it: who said what, its tags, what it asked and recommended."""

    speaker: str  # 用户 / 客服
    text: str
    act_tag: str
    tags: list[str] = field(default_factory=list)  # 'key：value' in annotation order, no duplicates
    asked: list[str] = field(default_factory=list)  # attribute keys, for 系统提问 turns
    items: list[str] = field(default_factory=list)  # recommended item ids

    @classmethod
    def from_turn(cls, turn: Turn) -> "Utterance":
        return cls(
            speaker=turn.sender_type,
            text=turn.send_content,
            act_tag=turn.act_tag,
            tags=unique(a.tag for a in turn.attributes),
            asked=unique(a.key for a in turn.attributes) if turn.act_tag == STAFF_ASK else [],
            items=list(turn.rec_item_id),
        )


@dataclass
class TaskSample:
    task: str
    split: str
    domain: str
    sid: str
    seq_no: int
    user_id: str
    seller_id: str
    context: list[Utterance]  # the turns before the target turn
    current: Utterance  # the target turn itself (its text is the input of understanding)
    target: list[str] | str  # understand: tags; elicit: keys; recommend: item id; respond: text
    needs: list[tuple[str, str]] = field(default_factory=list)  # user needs so far: (key, value)
    asked: list[str] = field(default_factory=list)  # respond: 'key：value' tags the reply asks about
    items: list[str] = field(default_factory=list)  # respond: items the reply recommends or explains
    candidates: list[str] = field(default_factory=list)  # recommend
    behaviours: list[str] = field(default_factory=list)  # recommend: item ids, latest last
    position: int = 0  # which recommended item of the turn (recommend)

    @property
    def key(self) -> str:
        """A stable id that prediction files use to attach one model's outputs to another's inputs."""
        return f"{self.split}/{self.sid}/{self.seq_no}/{self.task}/{self.position}"


def shown_items(sample: TaskSample) -> list[str]:
    """The items the dialogue recommended before this sample's turn."""
    return [i for u in sample.context for i in u.items]


def first_per_task(samples: Iterable[TaskSample], n: int | None) -> list[TaskSample]:
    """The first `n` samples of each task, in order (None: all). A CRS and an LLM that cap their
    predictions of a split this way predict the same samples."""
    if n is None:
        return list(samples)
    seen: dict[str, int] = {}
    kept = []
    for s in samples:
        if seen.get(s.task, 0) < n:
            kept.append(s)
            seen[s.task] = seen.get(s.task, 0) + 1
    return kept


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _needs_of(turns: Iterable[Turn]) -> list[tuple[str, str]]:
    """User needs so far: every valued attribute of a user turn, in order, duplicates kept once."""
    pairs = [(a.key, a.value) for t in turns if t.is_user for a in t.attributes if a.value]
    return list(dict.fromkeys(pairs))


def dialogue_samples(d: Dialogue, split: str, corpus: Corpus | None = None,
                     tasks: Iterable[str] = TASKS) -> Iterator[TaskSample]:
    wanted = set(tasks)
    unknown = wanted - set(TASKS)
    if unknown:
        raise ValueError(f"unknown task(s) {sorted(unknown)}; choose from {TASKS}")
    turns = d.dialogue
    utterances = [Utterance.from_turn(t) for t in turns]
    last_rec: tuple[int, list[str]] | None = None  # (turn index, items)
    for i, turn in enumerate(turns):
        base = dict(split=split, domain=d.domain, sid=d.sid, seq_no=turn.seq_no, user_id=d.userid,
                    seller_id=d.sellerid, context=utterances[:i], current=utterances[i])
        cur = utterances[i]
        if "understand" in wanted and cur.tags:
            yield TaskSample(task="understand", target=list(cur.tags), needs=_needs_of(turns[:i]), **base)
        if "elicit" in wanted and cur.asked:
            yield TaskSample(task="elicit", target=list(cur.asked), needs=_needs_of(turns[:i]), **base)
        if "recommend" in wanted and turn.rec_item_id:
            behaviours = corpus.user_behaviours(d.userid, before=turn.time, limit=MAX_BEHAVIOURS) if corpus else []
            lists = turn.rec_item_candidates or []
            for k, gold in enumerate(turn.rec_item_id):
                yield TaskSample(task="recommend", target=gold, needs=_needs_of(turns[:i]),
                                 candidates=list(lists[k]) if k < len(lists) else [],
                                 behaviours=behaviours, position=k, **base)
        if "respond" in wanted and not cur.speaker == USER and turn.send_content.strip() != LINK_ONLY:
            items = list(turn.rec_item_id)
            if not items and turn.act_tag == STAFF_EXPLAIN and last_rec and i - last_rec[0] <= EXPLAIN_WINDOW:
                items = list(last_rec[1])
            yield TaskSample(task="respond", target=turn.send_content, needs=_needs_of(turns[:i]),
                             asked=list(cur.tags) if cur.asked else [], items=items, **base)
        if turn.rec_item_id:
            last_rec = (i, list(turn.rec_item_id))


def build_samples(corpus: Corpus, split: str, tasks: Iterable[str] = TASKS,
                  domains: Iterable[str] | None = None) -> list[TaskSample]:
    """All samples of the given tasks in one split, in dialogue order."""
    tasks = list(tasks)
    keep = set(domains) if domains else None
    out: list[TaskSample] = []
    for d in corpus.split(split):
        if keep is None or d.domain in keep:
            out.extend(dialogue_samples(d, split, corpus, tasks))
    return out
