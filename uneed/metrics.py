"""Metrics of the U-NEED tasks (appendix D), declared once and looked up by name.

Each metric scores one sample; `evaluate` averages them over samples, overall and per category.
    set metrics    pred, gold: collections of tags ('key：value' or attribute keys)
    rank metrics   rank: 0-based rank of the gold item, or None when it is not ranked at all
    text metrics   pred: a response string, gold: the reference string
    reply checks   pred: a response string, gold: a ReplyReference (what the reply had to do and may
                   state); they return a Ratio, summed over the samples it applies to (see below)

The reply checks ask whether a shop assistant could send the reply:
    ask-names-attribute  a reply to an ask action names an asked attribute or one of its values
    knowledge-true       of the knowledge values a reply states (a known value of the domain found in
                         it) that the presented items' knowledge can check (the value's relation is one
                         the items' knowledge has), the share that is true of those items (over all
                         checked values); a value of a relation the knowledge is silent on is not judged
    repetition           the reply repeats an option or phrase back to back ('混合性，还是混合性', '她她她')
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

MetricFn = Callable[..., float]
METRICS: dict[str, MetricFn] = {}


def register(name: str):
    def wrap(fn: MetricFn) -> MetricFn:
        METRICS[name] = fn
        return fn

    return wrap


def get_metric(name: str) -> MetricFn:
    """Look a metric up by name: 'f1', 'hit@5', 'mrr@50', 'ndcg@10', 'distinct-2', 'bleu-1', ..."""
    if name in METRICS:
        return METRICS[name]
    base, _, k = name.partition("@")
    if k.isdigit() and f"{base}@k" in METRICS:
        fn = METRICS[f"{base}@k"]
        return lambda rank, _fn=fn, _k=int(k): _fn(rank, _k)
    raise KeyError(f"unknown metric {name!r}; known: {sorted(METRICS)}")


# ---------------------------------------------------------------------------------------- sets
def _prf(pred: Iterable[str], gold: Iterable[str]) -> tuple[float, float, float]:
    p_set, g_set = set(pred), set(gold)
    tp = len(p_set & g_set)
    if tp == 0:
        return 0.0, 0.0, 0.0
    precision, recall = tp / len(p_set), tp / len(g_set)
    return precision, recall, 2 * precision * recall / (precision + recall)


@register("precision")
def precision(pred: Iterable[str], gold: Iterable[str]) -> float:
    return _prf(pred, gold)[0]


@register("recall")
def recall(pred: Iterable[str], gold: Iterable[str]) -> float:
    return _prf(pred, gold)[1]


@register("f1")
def f1(pred: Iterable[str], gold: Iterable[str]) -> float:
    return _prf(pred, gold)[2]


# ---------------------------------------------------------------------------------------- ranks
@register("hit@k")
def hit_at_k(rank: int | None, k: int) -> float:
    return 1.0 if rank is not None and rank < k else 0.0


@register("mrr@k")
def mrr_at_k(rank: int | None, k: int) -> float:
    return 1.0 / (rank + 1) if rank is not None and rank < k else 0.0


@register("ndcg@k")
def ndcg_at_k(rank: int | None, k: int) -> float:
    return 1.0 / math.log2(rank + 2) if rank is not None and rank < k else 0.0


@register("accuracy")
def accuracy(rank: int | None) -> float:
    return hit_at_k(rank, 1)


def rank_of(gold: str, ranking: Sequence[str]) -> int | None:
    try:
        return list(ranking).index(gold)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------- text
def _char_ngrams(text: str, n: int) -> list[str]:
    return [text[i:i + n] for i in range(len(text) - n + 1)]


def distinct_n(pred: str, n: int) -> float:
    grams = _char_ngrams(pred, n)
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu_n(pred: str, gold: str, n: int) -> float:
    """Sentence BLEU on characters with uniform weights up to n, brevity penalty, no smoothing."""
    if not pred or not gold:
        return 0.0
    log_sum = 0.0
    for order in range(1, n + 1):
        p_grams, g_grams = Counter(_char_ngrams(pred, order)), Counter(_char_ngrams(gold, order))
        total = sum(p_grams.values())
        clipped = sum(min(c, g_grams[g]) for g, c in p_grams.items())
        if total == 0 or clipped == 0:
            return 0.0
        log_sum += math.log(clipped / total) / n
    bp = 1.0 if len(pred) > len(gold) else math.exp(1 - len(gold) / len(pred))
    return bp * math.exp(log_sum)


for _n in (1, 2):
    register(f"distinct-{_n}")(lambda pred, gold=None, _n=_n: distinct_n(pred, _n))
    register(f"bleu-{_n}")(lambda pred, gold, _n=_n: bleu_n(pred, gold, _n))


# ---------------------------------------------------------------------------------------- reply checks
@dataclass(frozen=True)
class Ratio:
    """A per-sample count: `evaluate` reports sum(hits) / sum(total) over the samples (those with
    total 0 do not count), and the summed total as '<name>/n'."""

    hits: float
    total: float


NOT_APPLICABLE = Ratio(0.0, 0.0)


@dataclass
class ReplyReference:
    """What a reply is checked against: the gold reply, the attributes its action asks about (with
    the values that name them), the knowledge values of the items it presents, and the known values
    of the domain (a known value found in a reply is a value the reply states)."""

    text: str = ""
    asked: dict[str, list[str]] = field(default_factory=dict)  # asked key -> its values
    item_values: frozenset[str] = frozenset()
    known_values: frozenset[str] = frozenset()
    has_items: bool = False
    # Item knowledge is partial (a real item_kg.txt lists a few relations per item): a stated value is
    # judged only when the items' knowledge has a relation it is a value of. A value missing from
    # value_relations is always judged (so an empty map judges every stated value).
    value_relations: Mapping[str, frozenset[str]] = field(default_factory=dict)  # known value -> its relations
    item_relations: frozenset[str] = frozenset()  # the relations the presented items' knowledge has


MIN_STATED_LEN = 2  # a one-character value ('高', '女') is not counted as stated: it hides in other words


def _alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def stated_values(reply: str, known_values: Iterable[str]) -> list[str]:
    """Known values found in the reply, longest first, none inside an accepted longer one; a value that
    begins or ends with a letter or digit must not continue a longer word or number ('40' in '400')."""
    found: list[tuple[int, int, str]] = []
    for value in sorted((v for v in set(known_values) if len(v) >= MIN_STATED_LEN), key=len, reverse=True):
        start = reply.find(value)
        while start != -1:
            end = start + len(value)
            glued = (_alnum(value[0]) and start > 0 and _alnum(reply[start - 1])) or \
                    (_alnum(value[-1]) and end < len(reply) and _alnum(reply[end]))
            if not glued and not any(s < end and start < e for s, e, _ in found):
                found.append((start, end, value))
                break
            start = reply.find(value, start + 1)
    return [v for _, _, v in sorted(found)]


@register("ask-names-attribute")
def ask_names_attribute(pred: str, ref: ReplyReference) -> Ratio:
    if not ref.asked:
        return NOT_APPLICABLE
    named = any(key in pred or any(v and v in pred for v in values) for key, values in ref.asked.items())
    return Ratio(float(named), 1.0)


def judged_values(reply: str, ref: ReplyReference) -> list[str]:
    """The values a reply states that its items' knowledge can confirm or refute (see ReplyReference)."""
    return [v for v in stated_values(reply, ref.known_values)
            if v not in ref.value_relations or ref.value_relations[v] & ref.item_relations]


def untrue_values(reply: str, ref: ReplyReference) -> list[str]:
    """The judged values of a reply that are not true of its items (knowledge-true's misses)."""
    return [v for v in judged_values(reply, ref) if v not in ref.item_values] if ref.has_items else []


@register("knowledge-true")
def knowledge_true(pred: str, ref: ReplyReference) -> Ratio:
    if not ref.has_items:
        return NOT_APPLICABLE
    stated = judged_values(pred, ref)
    return Ratio(float(sum(v in ref.item_values for v in stated)), float(len(stated)))


_OPTION_SPLIT = re.compile(r"[，,。！？!?；;、\s~]+|还是|或者|或是|或")
_CJK = "\u4e00-\u9fff"
_TRIPLE_CHAR = re.compile(f"([{_CJK}])\\1\\1")  # '她她她'
_PHRASE_TWICE = re.compile(f"([{_CJK}A-Za-z]{{2,}})\\1")  # '适合适合'
_PARTICLES = "是呢的呀吗啊哦嘛"


def repeats(reply: str) -> bool:
    """A character three times in a row, a phrase twice back to back, or two neighbouring options
    (split at punctuation and 还是/或) where the second repeats the end of the first."""
    if _TRIPLE_CHAR.search(reply) or _PHRASE_TWICE.search(reply):
        return True
    pieces = [p.strip(_PARTICLES) for p in _OPTION_SPLIT.split(reply)]
    pieces = [p for p in pieces if p]
    return any(len(b) >= 2 and a.endswith(b) for a, b in zip(pieces, pieces[1:]))


@register("repetition")
def repetition(pred: str, ref: ReplyReference | str | None = None) -> Ratio:
    return Ratio(float(repeats(pred)), 1.0)


# ---------------------------------------------------------------------------------------- tasks
TASK_METRICS = {
    "understand": ["precision", "recall", "f1"],
    "elicit": ["precision", "recall", "f1"],
    "recommend": ["accuracy", "hit@5", "mrr@5", "ndcg@5"],
    "recommend_catalog": ["hit@10", "hit@50", "mrr@50", "ndcg@50"],
    "respond": ["bleu-1", "bleu-2", "distinct-1", "distinct-2"],
    "respond_checks": ["ask-names-attribute", "knowledge-true", "repetition"],  # golds: ReplyReference
}
RANK_TASKS = {"recommend", "recommend_catalog"}


def evaluate(task: str, preds: Sequence, golds: Sequence, categories: Sequence[str] | None = None,
             metrics: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Average per-sample metrics; returns {'all': {...}, '<category>': {...}, ...} with a 'n' count each.

    For rank tasks `preds` are 0-based gold ranks (or None) and `golds` is ignored.
    """
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} references")
    names = list(metrics or TASK_METRICS[task])
    fns = {name: get_metric(name) for name in names}
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))  # Ratio denominators
    ratios: set[str] = set()
    counts: Counter = Counter()
    cats = categories if categories is not None else ["all"] * len(preds)
    for pred, gold, cat in zip(preds, golds, cats):
        groups = {"all", cat}
        for name, fn in fns.items():
            value = fn(pred) if task in RANK_TASKS else fn(pred, gold)
            if isinstance(value, Ratio):
                ratios.add(name)
                for g in groups:
                    sums[g][name] += value.hits
                    totals[g][name] += value.total
                continue
            for g in groups:
                sums[g][name] += value
        for g in groups:
            counts[g] += 1
    out = {}
    for group in sorted(sums, key=lambda g: (g != "all", g)):
        out[group] = {}
        for name in names:
            if name in ratios:
                total = totals[group][name]
                out[group][name] = sums[group][name] / total if total else 0.0
                out[group][f"{name}/n"] = total
            else:
                out[group][name] = sums[group][name] / counts[group]
        out[group]["n"] = counts[group]
    if not out:
        out["all"] = {name: 0.0 for name in names} | {"n": 0}
    return out


# ---------------------------------------------------------------------------------------- replies
ITEM_CARD = re.compile(r"^【商品[^】]*】")  # the link card a recommendation reply starts with


def reply_text(reply: str) -> str:
    """The words of a reply without its leading item link card."""
    return ITEM_CARD.sub("", reply or "").strip()
