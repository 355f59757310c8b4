"""Predicting a split with a CRS and scoring it with uneed.metrics (shared by training and eval/).

Scores per task, overall and per category (the dialogue's domain):
    understand, elicit   precision, recall, f1 of the parsed tags / keys
    recommend            accuracy, hit@5, mrr@5, ndcg@5 of the gold item among its candidates
    recommend_catalog    hit@10, hit@50, mrr@50, ndcg@50 of the gold item in the whole catalog
    respond              bleu-1, bleu-2, distinct-1, distinct-2 (characters)
    respond_checks       ask-names-attribute, knowledge-true, repetition (uneed.metrics, uneed.replies)
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Mapping, Sequence

from uneed.corpus import Corpus, Item
from uneed.metrics import evaluate, rank_of
from uneed.replies import describe_cuts, evaluate_replies, faithful_targets
from uneed.schema import STAFF_ASK, USER
from uneed.tasks import (TASKS, CRSExample, ReplyLayout, TaskSample, build_samples, crs_example, first_per_task,
                         parse_keys, parse_tags)

log = logging.getLogger(__name__)


def split_examples(corpus: Corpus, split: str, llm_predictions: Mapping[str, object] | None = None,
                   tasks: Iterable[str] = TASKS, max_per_task: int | None = None,
                   items: Mapping[str, Item] | None = None, reply: ReplyLayout = ReplyLayout(),
                   select: Callable[[TaskSample], bool] | None = None,
                   faithful_replies: bool = False) -> tuple[list[TaskSample], list[CRSExample]]:
    """Samples of a split and their CRS sequences (with the LLM's predictions when given); `select`
    keeps some (e.g. one cross-fitting fold); `faithful_replies` cuts the clauses of the replies that
    state values untrue of their items (uneed.replies.faithful_targets: for training targets).

    Recommendation samples without candidates are left out (they cannot be ranked)."""
    samples = [s for s in build_samples(corpus, split, tasks) if (s.task != "recommend" or s.candidates)
               and (select is None or select(s))]
    samples = first_per_task(samples, max_per_task)
    items = corpus.items if items is None else items
    if faithful_replies:
        samples, stats = faithful_targets(samples, items)
        log.info("%s split: %s", split, describe_cuts(stats))
    llm = llm_predictions or {}
    return samples, [crs_example(s, items, llm.get(s.key), reply) for s in samples]


def score_predictions(samples: Sequence[TaskSample], rows: Sequence[dict], items: Mapping[str, Item] | None = None,
                      cue_samples: Sequence[TaskSample] = ()) -> dict[str, dict]:
    """{task: {'all': {...}, '<domain>': {...}}} for every task present (plus recommend_catalog, and with
    `items` the reply checks 'respond_checks'; `cue_samples`, the train split's response samples, give
    them the question cues, uneed.replies)."""
    by_key = {r["key"]: r for r in rows}
    out: dict[str, dict] = {}
    for task in TASKS:
        pairs = [(s, by_key[s.key]) for s in samples if s.task == task and s.key in by_key]
        if not pairs:
            continue
        cats = [s.domain for s, _ in pairs]
        if task == "understand":
            out[task] = evaluate(task, [parse_tags(r["prediction"])[0] for _, r in pairs], [s.target for s, _ in pairs], cats)
        elif task == "elicit":
            out[task] = evaluate(task, [parse_keys(r["prediction"])[0] for _, r in pairs], [s.target for s, _ in pairs], cats)
        elif task == "respond":
            out[task] = evaluate(task, [r["prediction"] for _, r in pairs], [s.target for s, _ in pairs], cats)
            if items is not None:
                out["respond_checks"] = evaluate_replies([s for s, _ in pairs], [r["prediction"] for _, r in pairs],
                                                         items, cue_samples)
        else:
            ranks = [rank_of(s.target, r["prediction"]) for s, r in pairs]
            out[task] = evaluate(task, ranks, ranks, cats)
            if all("catalog_top" in r for _, r in pairs):
                cranks = [rank_of(s.target, r["catalog_top"]) for s, r in pairs]
                out["recommend_catalog"] = evaluate("recommend_catalog", cranks, cranks, cats)
    return out


def headline(metrics: Mapping[str, dict]) -> dict[str, float]:
    """The few overall numbers worth printing: understand/elicit f1, recommend acc/mrr@5, respond bleu-1/distinct-1."""
    pick = {"understand": ["f1"], "elicit": ["f1"], "recommend": ["accuracy", "hit@5", "mrr@5"],
            "recommend_catalog": ["hit@10", "hit@50", "mrr@50"], "respond": ["bleu-1", "bleu-2", "distinct-1"],
            "respond_checks": ["ask-names-attribute", "knowledge-true", "repetition"]}
    out = {}
    for task, names in pick.items():
        for name in names:
            if task in metrics and name in metrics[task].get("all", {}):
                out[f"{task}/{name}"] = round(float(metrics[task]["all"][name]), 4)
    return out


# ---------------------------------------------------------------------------------------- own reading
def own_context(crs, corpus: Corpus, samples: Sequence[TaskSample],
                llm_predictions: Mapping[str, object] | None = None) -> tuple[list[TaskSample], dict[str, str]]:
    """The samples as the CRS sees a dialogue on its own: every earlier turn carries the CRS's own
    understanding of it instead of the annotation, the needs so far are read from those tags, and a
    staff question's asked keys are the keys the CRS read in it. Turn by turn (a turn is read with the
    CRS's reading of the turns before it), all dialogues of a step in one batch.

    Returns the rewritten samples and {understanding sample key: the CRS's output for that turn}.
    What stays from the corpus: the texts, who spoke, the act tags and the items the staff sent."""
    from dataclasses import replace

    from uneed.schema import STAFF_ASK
    from uneed.tasks import Utterance, parse_tags
    from uneed.tasks.text import format_tags, split_tag

    wanted = {(s.split, s.sid) for s in samples}
    dialogues = [(split, d) for split in dict.fromkeys(s.split for s in samples) for d in corpus.split(split)
                 if (split, d.sid) in wanted]
    own = {d.sid: [Utterance(u.speaker, u.text, u.act_tag, items=list(u.items))
                   for u in (Utterance.from_turn(t) for t in d.dialogue)] for _, d in dialogues}
    outputs: dict[tuple[str, int], str] = {}
    llm = llm_predictions or {}
    for j in range(max((len(d.dialogue) for _, d in dialogues), default=0)):
        step, keys = [], []
        for split, d in dialogues:
            if j >= len(d.dialogue):
                continue
            turn = d.dialogue[j]
            s = TaskSample(task="understand", split=split, domain=d.domain, sid=d.sid, seq_no=turn.seq_no,
                           user_id=d.userid, seller_id=d.sellerid, context=own[d.sid][:j], current=own[d.sid][j],
                           target=[])
            step.append(crs_example(s, corpus.items, llm.get(s.key)))
            keys.append((d.sid, j))
        for (sid, i), row in zip(keys, crs.predict_examples(step, catalog_k=0)):
            tags = parse_tags(row["prediction"])[0]
            u = own[sid][i]
            u.tags = tags
            if u.act_tag == STAFF_ASK:
                u.asked = list(dict.fromkeys(split_tag(t)[0] for t in tags))
            outputs[(sid, i)] = format_tags(tags)
    index = {(d.sid, t.seq_no): i for _, d in dialogues for i, t in enumerate(d.dialogue)}
    rewritten, understood = [], {}
    for s in samples:
        i = index[(s.sid, s.seq_no)]
        context = own[s.sid][:i]
        needs = list(dict.fromkeys((k, v) for u in context if u.speaker == USER
                                   for k, v in (split_tag(t) for t in u.tags) if v))
        rewritten.append(replace(s, context=context, needs=needs))
        if s.task == "understand":
            understood[s.key] = outputs[(s.sid, i)]
    return rewritten, understood


CONTEXTS = ("own", "gold")


def predict_samples(crs, corpus: Corpus, samples: Sequence[TaskSample], llm_predictions: Mapping[str, object] | None = None,
                    context: str = "own", catalog_k: int = 50) -> list[dict]:
    """Prediction rows of samples, in their order. context='own': the CRS reads every earlier turn itself
    (own_context), nothing annotated enters its inputs; 'gold': earlier turns carry their annotations
    (the teacher-forced setting the sequences are trained in)."""
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    llm = llm_predictions or {}
    understood: dict[str, str] = {}
    if context == "own":
        samples, understood = own_context(crs, corpus, samples, llm)
    examples = [crs_example(s, corpus.items, llm.get(s.key), crs.config.reply_layout)
                for s in samples if s.key not in understood]
    rows = {r["key"]: r for r in crs.predict_examples(examples, catalog_k=catalog_k)}
    rows.update({k: {"key": k, "task": "understand", "prediction": v} for k, v in understood.items()})
    return [rows[s.key] for s in samples if s.key in rows]
