"""What the reply checks of uneed.metrics ('ask-names-attribute', 'knowledge-true', 'repetition')
compare a reply with: one `ReplyReference` per response-generation sample, built from the samples
and the item knowledge alone (so the CRS and the LLM evaluations build the same ones).

    the domain's items      items whose 一级类目 is one of those the domain's samples present
    known values            every knowledge value of those items (a stated value is one of them)
    an asked key's names    the key itself, the values of that relation among those items, the
                            values the sample's own action lists for it ('肤质：干皮'), and the
                            key's question cues: character pairs that the staff's questions about
                            that key use in the train split, and nearly only those questions
                            ('预算' for 价位, '多大' for 年龄), so a paraphrased question counts

Faithful training targets (`faithful_targets`): a staff reply that states a value its items' knowledge
refutes ('玩游戏也流畅' for a phone whose knowledge has no 流畅) teaches a model to state it too. So does
a reply about items whose knowledge has nothing a reply could state (an item_kg.txt line with only its
category and price range): its every stated value is invented, as far as the model can see, and a model
taught on them answers such items with a reply of facts from anywhere ('…500万像素…烟酰胺' for a pair of
shoes). Such clauses (`unfounded_values`) are cut from the train split's replies before a model learns
from them; the gold replies of the evaluated splits stay whole.
"""
from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from typing import Iterable, Mapping, Sequence

from .corpus import CATEGORY_RELATION, Item
from .metrics import MIN_STATED_LEN, ReplyReference, evaluate, stated_values, untrue_values
from .tasks.samples import TaskSample
from .tasks.text import split_tag


def item_values(item: Item | None) -> set[str]:
    """An item's knowledge values (the numeric 一级类目 code left out)."""
    if item is None:
        return set()
    return {v for rel, vs in item.knowledge.items() if rel != CATEGORY_RELATION for v in vs if v}


CUE_MIN_COUNT = 3  # a cue occurs in at least this many questions about its key
CUE_MIN_SHARE = 0.8  # and at least this share of the questions containing it ask that key


def question_cues(train_samples: Sequence[TaskSample]) -> dict[str, dict[str, set[str]]]:
    """{domain: {key: character pairs that name the key in a question}} from the questions (response
    samples with asked keys) of the train split."""
    per_key: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    overall: dict[str, Counter] = defaultdict(Counter)
    for s in train_samples:
        keys = {split_tag(t)[0] for t in s.asked} if s.task == "respond" else set()
        if not keys:
            continue
        text = str(s.target)
        pairs = {text[i:i + 2] for i in range(len(text) - 1)}
        overall[s.domain].update(pairs)
        for key in keys:
            per_key[s.domain][key].update(pairs)
    return {domain: {key: {p for p, n in counts.items()
                           if n >= CUE_MIN_COUNT and n / overall[domain][p] >= CUE_MIN_SHARE}
                     for key, counts in keys.items()} for domain, keys in per_key.items()}


def relations_of_values(values_by_relation: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """{value: the relations it is a value of}, from {relation: values}."""
    out: dict[str, set[str]] = defaultdict(set)
    for relation, values in values_by_relation.items():
        for v in values:
            out[v].add(relation)
    return {v: frozenset(rs) for v, rs in out.items()}


def reply_references(samples: Sequence[TaskSample], items: Mapping[str, Item],
                     cues: Mapping[str, Mapping[str, set[str]]] | None = None) -> list[ReplyReference]:
    """One reference per sample (response-generation samples; others get an empty reference).
    `cues`: question_cues of the train split (without them a question must name the key or a value)."""
    codes: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        for i in s.items:
            if i in items and items[i].category:
                codes[s.domain].add(items[i].category)
    known: dict[str, set[str]] = defaultdict(set)
    by_key: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    domains_of_code: dict[str, list[str]] = defaultdict(list)
    for domain, cs in codes.items():
        for c in cs:
            domains_of_code[c].append(domain)
    for item in items.values():
        for domain in domains_of_code.get(item.category, ()):
            for rel, vs in item.knowledge.items():
                if rel == CATEGORY_RELATION:
                    continue
                known[domain].update(v for v in vs if v)
                by_key[domain][rel].update(v for v in vs if v)
    refs = []
    value_relations: dict[str, dict[str, frozenset[str]]] = {}
    for s in samples:
        if s.task != "respond":
            refs.append(ReplyReference())
            continue
        asked: dict[str, set[str]] = {}
        for tag in s.asked:
            key, value = split_tag(tag)
            values = asked.setdefault(key, set(by_key[s.domain].get(key, set())) |
                                      set((cues or {}).get(s.domain, {}).get(key, set())))
            if value:
                values.add(value)
        facts = set().union(*(item_values(items.get(i)) for i in s.items)) if s.items else set()
        relations = {r for i in s.items if i in items for r in items[i].knowledge if r != CATEGORY_RELATION}
        if s.domain not in value_relations:
            value_relations[s.domain] = relations_of_values(by_key[s.domain])
        refs.append(ReplyReference(text=str(s.target), asked={k: sorted(v) for k, v in asked.items()},
                                   item_values=frozenset(facts), known_values=frozenset(known[s.domain]),
                                   has_items=bool(s.items), value_relations=value_relations[s.domain],
                                   item_relations=frozenset(relations)))
    return refs


def evaluate_replies(samples: Sequence[TaskSample], replies: Sequence[str], items: Mapping[str, Item],
                     train_samples: Sequence[TaskSample] = ()) -> dict:
    """uneed.metrics.evaluate of the reply checks ('respond_checks') over response samples and their
    replies; `train_samples` (response samples of the train split) give the question cues."""
    pairs = [(s, r) for s, r in zip(samples, replies) if s.task == "respond"]
    refs = reply_references([s for s, _ in pairs], items, question_cues(train_samples) if train_samples else None)
    return evaluate("respond_checks", [r for _, r in pairs], refs, [s.domain for s, _ in pairs])


_CLAUSE_END = re.compile(r"([，,。；;！!？?\n]+)")
_SENTENCE_END = frozenset("。！!？?")


def clause_prefixes(text: str) -> list[str]:
    """The text's prefixes that end a whole clause, longest first: each cut at a clause's punctuation,
    which stays only when it ends a sentence ('。', '！', '？'), as a reply would end. A training target
    too long for the model is cut to one of these, so the model learns to stop after a whole clause
    (cut at a fixed length, 35% of the train replies taught it to stop mid-word: '…用后肌价位很少见，添')."""
    out = []
    for m in _CLAUSE_END.finditer(text):
        keep = "".join(ch for ch in m.group(1) if ch in _SENTENCE_END)[:1]
        prefix = (text[:m.start()] + keep).strip()
        if prefix and prefix != text:
            out.append(prefix)
    return out[::-1]


def unfounded_values(reply: str, ref: ReplyReference) -> list[str]:
    """The values a training reply must not teach: those untrue of its items (untrue_values) and, where
    its items' knowledge holds no value a reply could state, every value it states."""
    if ref.has_items and not any(len(v) >= MIN_STATED_LEN for v in ref.item_values & ref.known_values):
        return stated_values(reply, ref.known_values)
    return untrue_values(reply, ref)


def faithful_reply(reply: str, ref: ReplyReference) -> str:
    """The reply without its clauses (cut at punctuation) that state an unfounded value (`unfounded_values`);
    '' when no clause is left."""
    if not unfounded_values(reply, ref):
        return reply
    pieces = _CLAUSE_END.split(reply)  # clause, punctuation, clause, ...
    kept: list[str] = []
    for i in range(0, len(pieces), 2):
        clause, punct = pieces[i], pieces[i + 1] if i + 1 < len(pieces) else ""
        if clause.strip() and not unfounded_values(clause, ref):
            kept += [clause, punct]
        elif kept and punct:  # the clause before a dropped one ends as the dropped one did ('；' ending a list item)
            kept[-1] = punct
    return "".join(kept).strip().rstrip("，,、")


def faithful_targets(samples: Sequence[TaskSample], items: Mapping[str, Item]) -> tuple[list[TaskSample], dict]:
    """The samples with each reply's unfounded clauses cut (`faithful_reply`); a reply with nothing left is
    left out. Returns the samples and {'replies', 'cut', 'dropped', 'unfounded_values'} counts."""
    refs = reply_references(samples, items)
    out, stats = [], Counter(replies=0, cut=0, dropped=0, unfounded_values=0)
    for s, ref in zip(samples, refs):
        if s.task != "respond":
            out.append(s)
            continue
        stats["replies"] += 1
        text = faithful_reply(str(s.target), ref)
        if text != s.target:
            stats["unfounded_values"] += len(unfounded_values(str(s.target), ref))
            stats["cut" if text else "dropped"] += 1
        if text:
            out.append(s if text == s.target else dataclasses.replace(s, target=text))
    return out, dict(stats)


def describe_cuts(stats: Mapping[str, int]) -> str:
    """faithful_targets' counts in words, for a log line."""
    return (f"{stats['cut']} of {stats['replies']} replies cut to the clauses their items' knowledge founds "
            f"({stats['unfounded_values']} values untrue of their items or stated of items whose knowledge "
            f"gives none), {stats['dropped']} left out")
