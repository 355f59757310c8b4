"""Metrics of the U-NEED tasks (appendix D), declared once and looked up by name.

Each metric scores one sample; `evaluate` averages them over samples, overall and per category.
    set metrics    pred, gold: collections of tags ('key：value' or attribute keys)
    rank metrics   rank: 0-based rank of the gold item, or None when it is not ranked at all
    text metrics   pred: a response string, gold: the reference string
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
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


# ---------------------------------------------------------------------------------------- tasks
TASK_METRICS = {
    "understand": ["precision", "recall", "f1"],
    "elicit": ["precision", "recall", "f1"],
    "recommend": ["accuracy", "hit@5", "mrr@5", "ndcg@5"],
    "recommend_catalog": ["hit@10", "hit@50", "mrr@50", "ndcg@50"],
    "respond": ["bleu-1", "bleu-2", "distinct-1", "distinct-2"],
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
    counts: Counter = Counter()
    cats = categories if categories is not None else ["all"] * len(preds)
    for pred, gold, cat in zip(preds, golds, cats):
        groups = {"all", cat}
        for name, fn in fns.items():
            value = fn(pred) if task in RANK_TASKS else fn(pred, gold)
            for g in groups:
                sums[g][name] += value
        for g in groups:
            counts[g] += 1
    out = {}
    for group in sorted(sums, key=lambda g: (g != "all", g)):
        out[group] = {name: sums[group][name] / counts[group] for name in names}
        out[group]["n"] = counts[group]
    if not out:
        out["all"] = {name: 0.0 for name in names} | {"n": 0}
    return out


# ---------------------------------------------------------------------------------------- reply checks
# Checks of one staff reply as the agent says it (replay and simulation score them turn by turn).
# Each is looked up by name like the metrics above and gives 1.0 (the reply passes) or 0.0.
#   attribute-named   a question names what it asks: an asked attribute or one of its offered values
#   knowledge-true    a reply about an item states no value of a relation that the item does not have
#   no-repetition     the reply is not the previous staff reply again (a back-to-back repetition)
ITEM_CARD = re.compile(r"^【商品[^】]*】")  # the link card a recommendation reply starts with
MIN_VALUE_CHARS = 2  # shorter values ('高', '中') match by accident in any sentence


def reply_text(reply: str) -> str:
    """The words of a reply without its leading item link card."""
    return ITEM_CARD.sub("", reply or "").strip()


@register("attribute-named")
def attribute_named(reply: str, asked: Iterable[str]) -> float:
    """asked: 'key：value' tags or bare keys of the attributes the reply asks about."""
    words = reply_text(reply)
    names = [part for tag in asked for part in tag.split("：") if part]
    return 1.0 if any(name in words for name in names) else 0.0


@register("knowledge-true")
def knowledge_true(reply: str, knowledge: Mapping[str, Sequence[str]],
                   vocabulary: Mapping[str, Iterable[str]]) -> float:
    """knowledge: the item's relation -> values; vocabulary: relation -> every value the catalog has.
    A value of relation r named in the reply must be one of the item's values of r."""
    words = reply_text(reply)
    for relation, own in knowledge.items():
        for value in vocabulary.get(relation, ()):
            if len(value) >= MIN_VALUE_CHARS and value not in own and value in words \
                    and not any(value in v or v in value for v in own):  # '纯棉' beside the item's '棉' is no error
                return 0.0
    return 1.0


@register("no-repetition")
def no_repetition(reply: str, previous: str | None) -> float:
    """previous: the staff reply right before this one in the conversation (None: there is none)."""
    return 0.0 if previous is not None and reply_text(reply) == reply_text(previous) and reply_text(reply) else 1.0


REPLY_CHECKS = ("attribute-named", "knowledge-true", "no-repetition")
