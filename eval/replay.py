"""Replay of U-NEED dialogues through the graphs: the agent measured turn by turn against the staff.

    presales replay --data DIR --run RUN --graph llm|crs|both [--split test] --out REPORT_DIR

A replay point is a user message followed by staff turns (a staff block: e.g. a link, then its
explanation; the graph answers one message with one reply, so the block is one point). For each
point a fresh thread holds the gold history up to that message (the earlier turns with their act
tags, annotations and items, written into the checkpointer with `Assistant.seed_thread`, nothing
re-generated), the graph runs on the message, and what it did is scored against what the staff did:

    action      ask / recommend / explain / close, and whether it agrees with the staff's act tag
                (close answers with an explanation of the accepted item: 系统解释)
    understand  P / R / F1 of the graph's tags of the message against its annotations
    ask         P / R / F1 of the attributes it asked against those the staff asked (staff questions)
    items       rank of the staff's item among the items the graph recommended this turn (hit@1: the
                item it showed; mrr), for staff recommendations
    catalog     rank of the staff's item over the whole catalog, ranked by the graph's CRS from the
                thread's state after the turn was understood (hit@1/5/10/50, mrr@50)
    reply       BLEU-1/2 against the staff's words (link-only turns left out), Distinct-1/2, and the
                reply checks of uneed.metrics (the generation metrics' own): ask-names-attribute
                (questions), knowledge-true (share of the knowledge values a reply about an item states
                that are true of it, averaged over those replies), repetition (an option or phrase
                repeated back to back; lower is better)

Per category and overall in REPORT_DIR/replay.{md,json,csv}, a chart beside the offline scores of the
same models (replay.png), and every step of every replayed turn in replay_steps.jsonl. On CPU the
turns are shared out among worker processes, one per core (`--processes`), each replaying one turn at
a time; on a GPU one process runs 16 conversations at once and merges their model calls into batches
(`--workers`, eval/batching.py). Every way gives the same records (tested in float32). Items the
knowledge file lacks are counted in the report, never fatal.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import pickle
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from agent.policy import PolicyConfig
from uneed.arguments import parse_args
from uneed.corpus import CATEGORY_RELATION, Corpus, Item
from uneed.device import cpu_bf16_matmul
from uneed.errors import PresalesError
from uneed.logs import setup_logging
from uneed.metrics import NOT_APPLICABLE, ReplyReference, get_metric, rank_of, reply_text
from uneed.replies import item_values, relations_of_values
from uneed.schema import DOMAINS, LINK_ONLY, SPLITS, STAFF_ASK, STAFF_EXPLAIN, STAFF_RECOMMEND, Dialogue, Turn

log = logging.getLogger("eval.replay")

ACTIONS = ("ask", "recommend", "explain", "close")
ACTION_OF_TAG = {STAFF_ASK: "ask", STAFF_RECOMMEND: "recommend", STAFF_EXPLAIN: "explain"}
TAG_OF_ACTION = {"ask": STAFF_ASK, "recommend": STAFF_RECOMMEND, "explain": STAFF_EXPLAIN, "close": STAFF_EXPLAIN}
CATALOG_K = 50
# the metrics of a replayed turn, in report order (None where one does not apply to a point)
METRICS = ["action-agreement", "und-precision", "und-recall", "und-f1", "ask-precision", "ask-recall", "ask-f1",
           "items-hit@1", "items-mrr", "catalog-hit@1", "catalog-hit@5", "catalog-hit@10", "catalog-hit@50",
           "catalog-mrr@50", "bleu-1", "bleu-2", "distinct-1", "distinct-2",
           "ask-names-attribute", "knowledge-true", "repetition"]  # the reply checks of uneed.metrics


# ----------------------------------------------------------------------------------- replay points
@dataclass
class ReplayPoint:
    key: str  # sid/block number
    sid: str
    domain: str
    user_text: str  # the message the graph runs on
    gold_tags: list[str]  # its annotations
    gold_act: str  # the staff block's act: recommend > ask > explain
    gold_asked: list[str]  # attribute keys the staff asked
    gold_items: list[str]  # items the staff recommended
    gold_text: str  # what the staff said (link-only turns left out)
    previous_reply: str | None  # the staff turn right before the message
    history: dict = field(repr=False)  # the thread state before the message (gold)


def staff_act(turns: Sequence[Turn]) -> str:
    tags = {t.act_tag for t in turns}
    if STAFF_RECOMMEND in tags and any(t.rec_item_id for t in turns):
        return "recommend"
    return "ask" if STAFF_ASK in tags else "explain"


def _turn_record(turn: Turn) -> dict:
    from tools.dialogue import turn_record

    asked = [a.key for a in turn.attributes] if turn.act_tag == STAFF_ASK else []
    return turn_record(turn.sender_type, turn.send_content, turn.act_tag, tags=[a.tag for a in turn.attributes],
                       asked=list(dict.fromkeys(asked)), items=list(turn.rec_item_id))


def _add_turn(state: dict, turn: Turn) -> dict:
    """The thread state after one gold turn, kept the way the graphs keep it."""
    from langchain_core.messages import AIMessage, HumanMessage

    from agent.policy import needs_of, rejected_items
    from agent.state import apply_update

    record = _turn_record(turn)
    if turn.is_user:
        update = {"messages": [HumanMessage(turn.send_content)], "transcript": [record],
                  "needs": needs_of(record["tags"]), "rejected": rejected_items(state, turn.send_content)}
    else:
        update = {"messages": [AIMessage(turn.send_content)], "transcript": [record], "asked": record["asked"],
                  "recommended": record["items"], "reply": turn.send_content}
        if record["items"]:
            update["candidates"] = record["items"]
    return apply_update(state, update)


def dialogue_points(d: Dialogue, behaviours: Callable[[str], list[str]]) -> Iterator[ReplayPoint]:
    """behaviours(time): the user's behaviours before that time (what the shop knows when the staff
    answers, as the offline recommendation samples have them)."""
    from agent.state import new_thread_state

    state = new_thread_state(d.domain, [])
    turns = d.dialogue
    previous_reply = None
    block = 0
    for i, turn in enumerate(turns):
        following = []
        if turn.is_user:
            j = i + 1
            while j < len(turns) and not turns[j].is_user:
                following.append(turns[j])
                j += 1
        if turn.is_user and following and turn.send_content.strip():
            said = [t.send_content for t in following if t.send_content.strip() != LINK_ONLY]
            yield ReplayPoint(
                key=f"{d.sid}/{block}", sid=d.sid, domain=d.domain, user_text=turn.send_content,
                gold_tags=list(dict.fromkeys(a.tag for a in turn.attributes)), gold_act=staff_act(following),
                gold_asked=list(dict.fromkeys(a.key for t in following if t.act_tag == STAFF_ASK for a in t.attributes)),
                gold_items=list(dict.fromkeys(x for t in following for x in t.rec_item_id)),
                gold_text=" ".join(said), previous_reply=previous_reply,
                history={**state, "behaviours": behaviours(following[0].time)})
            block += 1
        state = _add_turn(state, turn)
        if not turn.is_user:
            previous_reply = turn.send_content


def replay_points(corpus: Corpus, split: str, max_dialogues: int | None = None) -> list[ReplayPoint]:
    points = []
    for d in corpus.split(split)[:max_dialogues]:
        points.extend(dialogue_points(d, lambda time, user=d.userid: corpus.user_behaviours(user, before=time)))
    return points


# ----------------------------------------------------------------------------------- running a graph
def observe(point: ReplayPoint, state: Mapping[str, Any], events: list[dict]) -> dict:
    """What the graph did on this point, read from the thread's state after the turn."""
    from tools.dialogue import STAFF

    transcript = state.get("transcript", [])
    n = len(point.history.get("transcript", []))
    user = transcript[n] if len(transcript) > n else {}
    staff = transcript[-1] if len(transcript) > n + 1 and transcript[-1]["speaker"] == STAFF else {}
    closed = any(e.get("node") == "close" for e in events)
    action = "close" if closed else ACTION_OF_TAG.get(staff.get("act_tag", ""), "explain")
    items = list(staff.get("items", []))
    ranking = items + [c for c in state.get("candidates", []) if c not in items] if items and not closed else []
    llm_item = next((e.get("args", {}).get("llm_item") for e in events if e.get("tool") == "crs.recommend"), None)
    return {"action": action, "tags": list(user.get("tags", [])), "asked": list(staff.get("asked", [])),
            "attributes": list(staff.get("tags", [])), "items": items, "ranking": ranking,
            "reply": state.get("reply", ""), "llm_item": llm_item}


def run_point(assistant: Any, point: ReplayPoint, thread_id: str) -> dict:
    assistant.seed_thread(thread_id, point.history)
    result = assistant.send(point.user_text, thread_id=thread_id)
    return {"prediction": observe(point, result.state, result.events), "events": result.events,
            "state": result.state}


def catalog_ranks(crs: Any, runs: list[tuple[ReplayPoint, dict]]) -> list[int | None]:
    """Rank of the staff's item over the whole catalog, from each thread's state after the turn was
    understood (the staff reply of the graph left out), by the CRS the graph recommends with."""
    from tools.crs_tools import named_leaves
    from tools.dialogue import need_pairs, utterances

    contexts, needs, behaviours, exclude, llm_items = [], [], [], [], []
    for point, run in runs:
        state = run["state"]
        ctx = utterances(state)
        n = len(point.history.get("transcript", []))
        contexts.append(ctx[:n + 1])
        needs.append(need_pairs(state))
        behaviours.append(list(state.get("behaviours", [])))
        exclude.append(list(state.get("rejected", [])))
        llm_items.append(run["prediction"]["llm_item"])
    if not contexts:
        return []
    ranked = crs.recommend(contexts, needs, behaviours, k=CATALOG_K, exclude=exclude,
                           llm_items=llm_items if any(llm_items) else None,
                           domains=[point.domain for point, _run in runs],  # as the graphs recommend
                           leaves=[named_leaves(run["state"]) for _point, run in runs])
    out = []
    for (point, _run), items in zip(runs, ranked):
        ids = [s.item_id for s in items]
        ranks = [r for r in (rank_of(g, ids) for g in point.gold_items) if r is not None]
        out.append(min(ranks) if ranks else None)
    return out


# ----------------------------------------------------------------------------------- scoring
def knowledge_vocabulary(items: Mapping[str, Item]) -> dict[str, set[str]]:
    vocab: dict[str, set[str]] = defaultdict(set)
    for item in items.values():
        for relation, values in item.knowledge.items():
            if relation != CATEGORY_RELATION:
                vocab[relation].update(values)
    return vocab


def score_point(point: ReplayPoint, pred: dict, catalog_rank: int | None, items: Mapping[str, Item],
                vocabulary: Mapping[str, set[str]]) -> dict[str, float | None]:
    s: dict[str, float | None] = {m: None for m in METRICS}
    s["action-agreement"] = float(TAG_OF_ACTION[pred["action"]] == TAG_OF_ACTION[point.gold_act])
    if point.gold_tags:
        for m in ("precision", "recall", "f1"):
            s[f"und-{m}"] = get_metric(m)(pred["tags"], point.gold_tags)
    if point.gold_asked:
        for m in ("precision", "recall", "f1"):
            s[f"ask-{m}"] = get_metric(m)(pred["asked"], point.gold_asked)
    if point.gold_items:
        ranks = [r for r in (rank_of(g, pred["ranking"]) for g in point.gold_items) if r is not None]
        rank = min(ranks) if ranks else None
        s["items-hit@1"] = get_metric("hit@1")(rank)
        s["items-mrr"] = get_metric(f"mrr@{max(1, len(pred['ranking']))}")(rank)
        for k in (1, 5, 10, 50):
            s[f"catalog-hit@{k}"] = get_metric(f"hit@{k}")(catalog_rank)
        s["catalog-mrr@50"] = get_metric("mrr@50")(catalog_rank)
    words = reply_text(pred["reply"])
    if point.gold_text:
        s["bleu-1"] = get_metric("bleu-1")(words, point.gold_text)
        s["bleu-2"] = get_metric("bleu-2")(words, point.gold_text)
    s["distinct-1"] = get_metric("distinct-1")(words)
    s["distinct-2"] = get_metric("distinct-2")(words)
    if pred["action"] == "ask":
        asked: dict[str, list[str]] = {}
        for tag in pred["attributes"] or pred["asked"]:
            key, _, value = tag.partition("：")
            asked.setdefault(key, []).extend([value] if value else [])
        s["ask-names-attribute"] = _share(get_metric("ask-names-attribute")(words, ReplyReference(asked=asked)))
    shown = [i for i in pred["items"] if i in items]
    if shown:
        known = frozenset(v for values in vocabulary.values() for v in values)
        shown_item = items[shown[0]]
        ref = ReplyReference(item_values=frozenset(item_values(shown_item)), known_values=known, has_items=True,
                             value_relations=relations_of_values(vocabulary),
                             item_relations=frozenset(r for r in shown_item.knowledge if r != CATEGORY_RELATION))
        s["knowledge-true"] = _share(get_metric("knowledge-true")(words, ref))
    s["repetition"] = _share(get_metric("repetition")(words))
    return s


def _share(ratio) -> float | None:
    """A reply check's Ratio as one turn's score (None: the check does not apply to the turn)."""
    return None if ratio == NOT_APPLICABLE or not ratio.total else ratio.hits / ratio.total


def aggregate(rows: Sequence[tuple[str, Mapping[str, float | None]]]) -> dict[str, dict[str, float]]:
    """{'all' | category: {metric: mean over the points it applies to, 'n': points, 'n_<metric>': count}}."""
    sums: dict[str, Counter] = defaultdict(Counter)
    counts: dict[str, Counter] = defaultdict(Counter)
    points: Counter = Counter()
    for category, scores in rows:
        for group in ("all", category):
            points[group] += 1
            for m, v in scores.items():
                if v is not None:
                    sums[group][m] += v
                    counts[group][m] += 1
    out = {}
    for group in sorted(points, key=lambda g: (g != "all", list(DOMAINS).index(g) if g in DOMAINS else 99, g)):
        row: dict[str, float] = {"n": points[group]}
        for m in METRICS:
            if counts[group][m]:
                row[m] = sums[group][m] / counts[group][m]
                row[f"n_{m}"] = counts[group][m]
        out[group] = row
    return out


# ----------------------------------------------------------------------------------- one graph
@dataclass(frozen=True)
class GraphSpec:
    """What a worker process needs to load the graph it replays (a loaded assistant does not pickle)."""

    run: str
    kind: str
    reply_writer: str = PolicyConfig.reply_writer
    bf16_prefill: bool = False  # the LLMs' prompt pass in bfloat16 (llm/decoding.py)

    def load(self) -> Any:
        from agent.assistant import Assistant, memory_checkpointer

        assistant = Assistant.from_run(self.run, self.kind, checkpointer=memory_checkpointer(),
                                       policy=PolicyConfig(reply_writer=self.reply_writer))
        for llm in assistant.llms:
            llm.bf16_prefill = self.bf16_prefill
        return assistant


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_processes() -> int:
    """Replay processes when none are asked for: one per CPU core (at most 4) on CPU, one on a GPU. The
    embedded models' decoding is bound by Python, not arithmetic, so one process uses about one core
    whatever torch's thread count (README, replay speed)."""
    return 1 if _cuda() else max(1, min(4, cpu_cores()))


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


_worker: dict[str, Any] = {"graphs": {}}  # per graph kind, what a replay worker process loaded for it


def _start_worker(threads: int) -> None:
    import faiss
    import torch

    setup_logging(logging.WARNING)
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def _loaded(spec: GraphSpec) -> tuple[Any, Any]:
    """This worker process's copy of a graph (loaded at its first chunk) and its call batcher."""
    from .batching import CallBatcher, batch_models

    if spec.kind not in _worker["graphs"]:
        try:
            assistant = spec.load()
        except Exception as exc:  # noqa: BLE001 - raised again by every chunk, so the parent reports it
            _worker["graphs"][spec.kind] = _portable(exc)
        else:
            batcher = CallBatcher()
            batch_models(batcher, [assistant.models.get("crs")], assistant.llms)
            _worker["graphs"][spec.kind] = (assistant, batcher)
    loaded = _worker["graphs"][spec.kind]
    if isinstance(loaded, Exception):
        raise loaded
    return loaded


def _portable(result: Any) -> Any:
    """A job's result as it can travel back to the parent process (an exception that does not pickle is
    sent as a RuntimeError with its type and message)."""
    if isinstance(result, Exception):
        try:
            pickle.dumps(result)
        except Exception:  # noqa: BLE001 - any pickling failure
            return RuntimeError(f"{type(result).__name__}: {result}")
    return result


def _replay_points(assistant: Any, batcher: Any, indexed: Sequence[tuple[int, ReplayPoint]], run_id: str,
                   workers: int, on_done: Callable[[int], None] | None = None) -> list[tuple[int, Any]]:
    """Run (index, point) pairs through a loaded graph: (index, outcome) per point, an outcome being
    (prediction, catalog rank, steps) or the exception the turn raised."""
    from .batching import run_concurrently

    jobs = [lambda p=p, i=i: run_point(assistant, p, f"replay-{assistant.kind}-{run_id}-{i}") for i, p in indexed]
    results = run_concurrently(jobs, workers, batcher, on_done=(lambda _i, _r: on_done(1)) if on_done else None)
    recs = [(p, r) for (_i, p), r in zip(indexed, results) if not isinstance(r, Exception) and p.gold_items]
    ranks = dict(zip([p.key for p, _ in recs], catalog_ranks(assistant.models["crs"], recs)))  # one batched call
    return [(i, r if isinstance(r, Exception) else (r["prediction"], ranks.get(p.key), r["events"]))
            for (i, p), r in zip(indexed, results)]


def _replay_chunk(spec: GraphSpec, chunk: Sequence[tuple[int, ReplayPoint]], run_id: str,
                  workers: int) -> tuple[list[tuple[int, Any]], dict]:
    """Run a chunk of points through a graph in this worker process: (index, outcome) per point; the
    model calls asked and made for them, the staff items the graph's catalog lacks, the seconds taken
    (loading the graph included)."""
    start = time.perf_counter()
    assistant, batcher = _loaded(spec)
    before = (batcher.requests, batcher.calls)
    done = _replay_points(assistant, batcher, chunk, run_id, workers)
    unknown = {i for _, p in chunk for i in p.gold_items if i not in assistant.models["crs"].catalog}
    return [(i, _portable(r)) for i, r in done], {"requests": batcher.requests - before[0],
                                                  "calls": batcher.calls - before[1], "unknown": unknown,
                                                  "seconds": time.perf_counter() - start}


def replay_in_processes(specs: Sequence[GraphSpec], points: Sequence[ReplayPoint], corpus: Corpus, processes: int,
                        workers: int = 1, progress: bool = True) -> dict[str, dict]:
    """Every point through every graph, shared out among `processes` worker processes (one pool for
    all graphs: each process loads a graph at its first chunk of it, and none waits for another graph
    to finish), each with cores // processes torch threads. Per graph kind the result of
    `replay_graph`; its seconds are its share of the wall time (its chunks' seconds over `processes`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, cpu_cores() // processes)
    indexed = list(enumerate(points))
    size = max(1, min(4, len(indexed) // (processes * 4)))  # small chunks keep the processes evenly busy
    chunks = [indexed[i:i + size] for i in range(0, len(indexed), size)]
    outcomes: dict[str, list[Any]] = {spec.kind: [None] * len(points) for spec in specs}
    totals = {spec.kind: {"requests": 0, "calls": 0, "seconds": 0.0, "unknown": set()} for spec in specs}
    run_id = uuid.uuid4().hex[:8]  # thread ids of this replay, apart from any other run of the same graph
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(points) * len(specs), desc="replay " + " + ".join(s.kind for s in specs), unit="turn")
    # spawn: a forked child would inherit the parent's torch thread pools, which can hang it
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(_replay_chunk, spec, chunk, run_id, workers): spec.kind
                   for spec in specs for chunk in chunks}
        for future in as_completed(futures):
            kind = futures[future]
            done, counts = future.result()  # a worker that died (not a failed turn) ends the replay
            for i, r in done:
                outcomes[kind][i] = r
            total = totals[kind]
            for name in ("requests", "calls", "seconds"):
                total[name] += counts[name]
            total["unknown"] |= counts["unknown"]
            if bar is not None:
                bar.update(len(done))
    if bar is not None:
        bar.close()
    out = {}
    for spec in specs:
        total = totals[spec.kind]
        out[spec.kind] = scored_run(spec.kind, points, outcomes[spec.kind], corpus, total["seconds"] / processes,
                                    {"requests": total["requests"], "calls": total["calls"], "workers": workers,
                                     "processes": processes})
        out[spec.kind]["unknown_to_catalog"] = len(total["unknown"])
    return out


def replay_graph(graph: Any, points: Sequence[ReplayPoint], corpus: Corpus, workers: int = 1,
                 progress: bool = True, processes: int = 1) -> dict:
    """Run every point through one graph, a loaded `Assistant` or a `GraphSpec` to load (in `processes`
    worker processes when more than one: `replay_in_processes`). Returns the per-point records, the
    aggregate, timings and the number of staff items the graph's catalog lacks."""
    from .batching import CallBatcher, batch_models

    if processes > 1:
        if not isinstance(graph, GraphSpec):
            raise ValueError("replay_graph with processes > 1 needs a GraphSpec, which each process loads")
        return replay_in_processes([graph], points, corpus, processes, workers, progress)[graph.kind]
    assistant = graph.load() if isinstance(graph, GraphSpec) else graph
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(points), desc=f"replay graph {assistant.kind}", unit="turn")
    run_id = uuid.uuid4().hex[:8]  # thread ids of this replay, apart from any other run of the same graph
    start = time.perf_counter()
    batcher = CallBatcher()
    batch_models(batcher, [assistant.models.get("crs")], assistant.llms)
    try:
        done = _replay_points(assistant, batcher, list(enumerate(points)), run_id, workers,
                              bar.update if bar is not None else None)
    finally:
        batcher.restore()
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    result = scored_run(assistant.kind, points, [r for _, r in done], corpus, seconds,
                        {"requests": batcher.requests, "calls": batcher.calls, "workers": workers, "processes": 1})
    result["unknown_to_catalog"] = len({i for p in points for i in p.gold_items
                                        if i not in assistant.models["crs"].catalog})
    return result


def scored_run(kind: str, points: Sequence[ReplayPoint], outcomes: Sequence, corpus: Corpus, seconds: float,
               batching: dict) -> dict:
    """One policy's replay result: per point its outcome, (prediction, catalog rank, steps or None) or the
    exception it raised, scored against the staff; the records, the aggregate, the confusion and timings."""
    vocab = knowledge_vocabulary(corpus.items)
    records, rows = [], []
    confusion: dict[str, Counter] = defaultdict(Counter)
    for point, outcome in zip(points, outcomes):
        record = {"graph": kind, "key": point.key, "domain": point.domain, "user": point.user_text,
                  "gold": {"act": point.gold_act, "tags": point.gold_tags, "asked": point.gold_asked,
                           "items": point.gold_items, "text": point.gold_text}}
        if isinstance(outcome, Exception):
            record["error"] = f"{type(outcome).__name__}: {outcome}"
        else:
            pred, rank, steps = outcome
            scores = score_point(point, pred, rank, corpus.items, vocab)
            rows.append((point.domain, scores))
            confusion[point.gold_act][pred["action"]] += 1
            record.update(prediction={**pred, "ranking": pred["ranking"][:CATALOG_K], "catalog_rank": rank},
                          scores=scores)
            if steps is not None:
                record["steps"] = steps
        records.append(record)
    errors = [r for r in records if "error" in r]
    if errors:
        log.warning("graph %s: %d of %d turns failed (see replay_steps.jsonl), first: %s", kind, len(errors),
                    len(records), errors[0]["error"])
    return {"records": records, "metrics": aggregate(rows), "seconds": seconds,
            "turns_per_s": len(points) / seconds if seconds else 0.0, "errors": len(errors),
            "confusion": {g: dict(c) for g, c in confusion.items()}, "batching": batching}


def decision_accuracy(confusion: Mapping[str, Mapping[str, int]]) -> tuple[float, int]:
    """Ask vs recommend, end to end: of the points where the staff asked or recommended, the share where the
    graph did the same, with its own tool results (the controller's offline figure reads gold ones)."""
    n = sum(sum(confusion.get(gold, {}).values()) for gold in ("ask", "recommend"))
    right = sum(confusion.get(gold, {}).get(gold, 0) for gold in ("ask", "recommend"))
    return (right / n if n else 0.0), n


# ----------------------------------------------------------------------------------- the trivial policy
class TrivialPolicy:
    """What the graphs must beat, replayed on the same points and scored the same way; fitted on the train
    split of the corpus the run's models trained on: the domain's most common staff act, the lexicon
    matcher's tags, the domain's most asked attribute, its most popular items not shown yet (ranked over
    the domain's items, as the graphs' catalog ranks are), and the most common train reply for the act."""

    def __init__(self, train: Corpus, items: Corpus):
        from uneed.baselines import LexiconMatcher, MajorityElicitor, PopularityRecommender
        from uneed.tasks import build_samples

        samples = build_samples(train, "train", ["understand", "elicit"])
        self.lexicon, self.majority = LexiconMatcher().fit(samples), MajorityElicitor().fit(samples)
        self.popularity = PopularityRecommender().fit(train)
        acts: dict[str, Counter] = defaultdict(Counter)
        replies: dict[tuple[str, str], Counter] = defaultdict(Counter)
        for p in replay_points(train, "train"):
            acts[p.domain][p.gold_act] += 1
            if p.gold_text:
                replies[(p.domain, p.gold_act)][p.gold_text] += 1
        self.act = {d: c.most_common(1)[0][0] for d, c in acts.items()}
        self.reply = {k: c.most_common(1)[0][0] for k, c in replies.items()}
        by_domain: dict[str, list[str]] = defaultdict(list)
        for item_id, domain in items.item_domains().items():
            by_domain[domain].append(item_id)
        self.domain_items = {d: self.popularity.rank(ids) for d, ids in by_domain.items()}

    def run(self, point: ReplayPoint) -> tuple[dict, int | None]:
        """The prediction (as `observe` gives a graph's) and the catalog rank of the staff's item."""
        action = self.act.get(point.domain, "ask")
        shown = {i for t in point.history.get("transcript", []) for i in t.get("items", [])}
        ranking = [i for i in self.domain_items.get(point.domain, []) if i not in shown]
        asked = self.majority.predict(point.domain) if action == "ask" else []
        items = ranking[:1] if action == "recommend" else []
        ranks = [r for r in (rank_of(g, ranking[:CATALOG_K]) for g in point.gold_items) if r is not None]
        pred = {"action": action, "tags": self.lexicon.predict(point.user_text, point.domain), "asked": asked,
                "attributes": [f"{a}：" for a in asked], "items": items, "ranking": ranking if items else [],
                "reply": self.reply.get((point.domain, action), ""), "llm_item": None}
        return pred, (min(ranks) if ranks else None)


def replay_trivial(policy: TrivialPolicy, points: Sequence[ReplayPoint], corpus: Corpus) -> dict:
    """The trivial policy over every point, in the shape of `replay_graph`'s result."""
    start = time.perf_counter()
    outcomes = [(*policy.run(point), None) for point in points]
    return scored_run("trivial", points, outcomes, corpus, time.perf_counter() - start,
                      {"requests": 0, "calls": 0, "workers": 1, "processes": 1})


# ----------------------------------------------------------------------------------- the report
GRAPH_NAMES = {"llm": "graph 1 (LLM in control)", "crs": "graph 2 (CRS in control)",
               "trivial": "trivial policy (majority act, lexicon, majority attribute, popular items, commonest reply)"}
# replay metric -> (offline task, offline metric) of the paper's tables: the same thing measured offline
OFFLINE_OF = {"und-f1": ("understand", "f1"), "ask-f1": ("elicit", "f1"),
              "catalog-hit@10": ("recommend_catalog", "hit@10"), "catalog-hit@50": ("recommend_catalog", "hit@50"), "bleu-1": ("respond", "bleu-1"),
              "distinct-2": ("respond", "distinct-2")}
# the offline rows (eval.tables.METHODS names) that hold the same models as each graph
OFFLINE_ROWS = {"llm": ["CRS", "LLM"], "crs": ["LLM assisting CRS", "LLM"]}
SHORT = {"action-agreement": "act", "und-precision": "und P", "und-recall": "und R", "und-f1": "und F1",
         "ask-precision": "ask P", "ask-recall": "ask R", "ask-f1": "ask F1", "items-hit@1": "item H@1",
         "items-mrr": "item MRR", "catalog-hit@1": "cat H@1", "catalog-hit@5": "cat H@5", "catalog-hit@10": "cat H@10",
         "catalog-hit@50": "cat H@50", "catalog-mrr@50": "cat M@50", "bleu-1": "B-1", "bleu-2": "B-2",
         "distinct-1": "D-1", "distinct-2": "D-2", "ask-names-attribute": "attr named", "knowledge-true": "knowl. true",
         "repetition": "repeats"}


def _cell(row: Mapping[str, float], m: str) -> str:
    return f"{row[m]:.3f}" if m in row else "-"


def render_markdown(report: dict) -> str:
    graphs = report["graphs"]
    lines = [f"# Replay of `{report['data']}` ({report['split']} split) through the graphs of `{report['run']}`", "",
             f"{report['points']} replay points (user message → staff block) from {report['dialogues']} dialogues. "
             + (f"Gold items missing from item_kg.txt: {report['missing_items']} (reported, not fatal). "
                if report["missing_items"] else "")
             + (f"Gold items the CRS catalog lacks: {report['unknown_to_catalog']}. " if report["unknown_to_catalog"]
                else "")
             + ("Graph 1's replies are written by " + ("the instruction-tuned LLM." if report.get("reply_writer", "controller")
                                                      == "llm" else "its controller.") if "llm" in report["graphs"]
                else ""), ""]
    lines += ["## All categories", "", "| graph | turns | " + " | ".join(SHORT[m] for m in METRICS) + " | turns/s |",
              "|---" * (len(METRICS) + 3) + "|"]
    for kind, g in graphs.items():
        row = g["metrics"].get("all", {})
        lines.append(f"| {GRAPH_NAMES[kind]} | {row.get('n', 0)} | " + " | ".join(_cell(row, m) for m in METRICS)
                     + f" | {g['turns_per_s']:.2f} |")
    lines.append("")
    for kind, g in graphs.items():  # the reply checks depend on what each graph did
        row = g["metrics"].get("all", {})
        lines.append(f"Turns each metric of {GRAPH_NAMES[kind]} applies to: "
                     + ", ".join(f"{SHORT[m]} {row.get('n_' + m, 0)}" for m in METRICS) + ".")
    lines.append("")
    lines += ["## Per category", ""]
    head = ["action-agreement", "und-f1", "ask-f1", "items-hit@1", "catalog-hit@10", "catalog-mrr@50", "bleu-1",
            "distinct-2", "ask-names-attribute", "knowledge-true", "repetition"]
    lines += ["| graph | category | turns | " + " | ".join(SHORT[m] for m in head) + " |", "|---" * (len(head) + 3) + "|"]
    for kind, g in graphs.items():
        for group, row in g["metrics"].items():
            name = "All" if group == "all" else f"{DOMAINS.get(group, group)} {group}"
            lines.append(f"| {kind} | {name} | {row['n']} | " + " | ".join(_cell(row, m) for m in head) + " |")
    lines += ["", "## What the graphs did where the staff asked, recommended or explained", "",
              "| graph | staff act | " + " | ".join(ACTIONS) + " |", "|---" * (len(ACTIONS) + 2) + "|"]
    for kind, g in graphs.items():
        for gold in ("ask", "recommend", "explain"):
            counts = g["confusion"].get(gold, {})
            cells = " | ".join(str(counts.get(a, 0)) for a in ACTIONS)
            lines.append(f"| {kind} | {gold} ({sum(counts.values())}) | {cells} |")
    lines.append("")
    for kind, g in graphs.items():
        accuracy, n = decision_accuracy(g["confusion"])
        lines.append(f"Ask vs recommend, end to end ({GRAPH_NAMES[kind]}): {accuracy:.3f} of the {n} points where the "
                     "staff asked or recommended.")
    if report.get("offline"):
        lines += ["", "## Replay beside the offline scores of the same models", "",
                  "| metric | " + " | ".join(f"replay {k}" for k in graphs) + " | " + " | ".join(
                      f"offline {n}" for n in report["offline"]) + " |",
                  "|---" * (1 + len(graphs) + len(report["offline"])) + "|"]
        for m, (task, om) in OFFLINE_OF.items():
            cells = [_cell(g["metrics"].get("all", {}), m) for g in graphs.values()]
            cells += [f"{report['offline'][n][task][om]:.3f}" if om in report["offline"][n].get(task, {}) else "-"
                      for n in report["offline"]]
            lines.append(f"| {SHORT[m]} ({task} {om} offline) | " + " | ".join(cells) + " |")
    lines += ["", "## Timing", "",
              "| graph | turns | seconds | turns/s | model calls asked | batched calls made | processes | workers each |",
              "|---|---|---|---|---|---|---|---|"]
    for kind, g in graphs.items():
        b = g["batching"]
        lines.append(f"| {kind} | {g['metrics'].get('all', {}).get('n', 0)} | {g['seconds']:.1f} | {g['turns_per_s']:.2f} | "
                     f"{b['requests']} | {b['calls']} | {b.get('processes', 1)} | {b['workers']} |")
    if "seconds" in report:
        lines += ["", f"The graphs' replay took {report['seconds']:.1f} s of wall time. In worker processes the "
                      "graphs share one pool, and a graph's seconds are its share of that time (its chunks' "
                      "seconds over the processes). The LLMs' prompt pass ran in "
                      + ("bfloat16." if report.get("bf16_prefill") else "float32.")]
    lines += ["", "![replay beside offline](replay.png)", ""]
    return "\n".join(lines)


def write_csv(path: Path, graphs: Mapping[str, dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["graph", "category", "metric", "value", "n"])
        for kind, g in graphs.items():
            for group, row in g["metrics"].items():
                for m in METRICS:
                    if m in row:
                        writer.writerow([kind, group, m, f"{row[m]:.6f}", row[f"n_{m}"]])


def plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graphs, offline = report["graphs"], report.get("offline", {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    metrics = list(OFFLINE_OF)
    series = [(f"replay {GRAPH_NAMES[k]}", [g["metrics"].get("all", {}).get(m, 0.0) for m in metrics])
              for k, g in graphs.items()]
    series += [(f"offline {n}", [offline[n].get(t, {}).get(om, 0.0) for t, om in OFFLINE_OF.values()]) for n in offline]
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series):
        left.bar([x + i * width for x in range(len(metrics))], values, width, label=name,
                 hatch="" if name.startswith("replay") else "//")
    left.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(metrics))])
    left.set_xticklabels([SHORT[m] for m in metrics])
    left.set_ylim(0, 1)
    left.set_title("Replay (graphs, turn by turn) beside offline (models, task by task)")
    left.legend(fontsize=7)
    kinds = ["staff"] + list(graphs)
    bottoms = [0.0] * len(kinds)
    first = next(iter(graphs.values()))
    staff = Counter({gold: sum(c.values()) for gold, c in first["confusion"].items()})
    for action in ACTIONS:
        values = [staff.get(action, 0)] + [sum(c.get(action, 0) for c in g["confusion"].values()) for g in graphs.values()]
        total = [max(1, sum(staff.values()))] * len(kinds)
        shares = [v / t for v, t in zip(values, total)]
        right.bar(kinds, shares, bottom=bottoms, label=action)
        bottoms = [b + s for b, s in zip(bottoms, shares)]
    right.set_title("Actions taken")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def offline_scores(run: Path, kinds: Sequence[str]) -> dict[str, dict]:
    from .tables import load_results

    results = load_results(run)
    names = list(dict.fromkeys(n for k in kinds for n in OFFLINE_ROWS[k]))
    return {n: {t: g.get("all", {}) for t, g in results[n].items() if isinstance(g, dict)} for n in names if n in results}


def write_report(report: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "replay.md", "json": out / "replay.json", "csv": out / "replay.csv",
             "png": out / "replay.png", "jsonl": out / "replay_steps.jsonl"}
    with paths["jsonl"].open("w", encoding="utf-8") as fh:
        for g in report["graphs"].values():
            for record in g["records"]:
                fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    summary = {**report, "graphs": {k: {n: v for n, v in g.items() if n != "records"}
                                    for k, g in report["graphs"].items()}}
    paths["json"].write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    write_csv(paths["csv"], report["graphs"])
    plot(report, paths["png"])
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    return paths


# ----------------------------------------------------------------------------------- the command
@dataclass
class ReplayArgs:
    """Replay the dialogues of a U-NEED-format directory through the graphs of an agent run."""

    data: str = field(metadata={"help": "U-NEED-format directory whose dialogues are replayed"})
    run: str = field(default="runs/default", metadata={"help": "agent run directory (scripts/run_default.sh)"})
    graph: str = field(default="both", metadata={"help": "llm | crs | both"})
    split: str = field(default="test", metadata={"help": "train | valid | test"})
    out: str = field(default="", metadata={"help": "report directory (default: RUN/replay)"})
    processes: int = field(default=0, metadata={"help": "worker processes sharing the turns out, each with its own "
                                                       "copy of the models (0: one per CPU core, at most 4, on CPU; "
                                                       "1 on a GPU)"})
    workers: int = field(default=0, metadata={"help": "conversations run at once in each process (their model calls "
                                                     "are batched; 0: 1 on CPU, where batching the embedded models "
                                                     "is slower, 16 on a GPU)"})
    max_dialogues: int | None = field(default=None, metadata={"help": "replay only the first N dialogues"})
    progress: bool = field(default=True, metadata={"help": "progress bars on the terminal"})
    bf16_prefill: str = field(default="auto", metadata={"help": "the LLMs' prompt pass in bfloat16 on CPU: auto (where "
                                                             "the CPU has bf16 matrix units), on, off (float32 "
                                                             "throughout)"})
    reply_writer: str = field(default=PolicyConfig.reply_writer, metadata={"help": "graph 1's replies: llm (the "
                                                                                 "instruction-tuned LLM writes "
                                                                                 "them) | controller (its own text)"})


def replay(args: ReplayArgs) -> dict:
    from agent.assistant import GRAPHS, RunPaths
    from uneed.corpus import load_corpus

    kinds = list(GRAPHS) if args.graph == "both" else [args.graph]
    if any(k not in GRAPHS for k in kinds):
        raise PresalesError(f"--graph must be llm, crs or both, got {args.graph!r}")
    if args.split not in SPLITS:
        raise PresalesError(f"--split must be one of {', '.join(SPLITS)}, got {args.split!r}")
    for name in ("processes", "workers"):
        if getattr(args, name) < 0:
            raise PresalesError(f"--{name} must be 0 (automatic) or more, got {getattr(args, name)}")
    if args.reply_writer not in ("llm", "controller"):
        raise PresalesError(f"--reply-writer must be llm or controller, got {args.reply_writer!r}")
    if args.bf16_prefill not in ("auto", "on", "off"):
        raise PresalesError(f"--bf16-prefill must be auto, on or off, got {args.bf16_prefill!r}")
    bf16_prefill = args.bf16_prefill == "on" or (args.bf16_prefill == "auto" and not _cuda() and cpu_bf16_matmul())
    processes = args.processes or default_processes()
    workers = args.workers or (1 if processes > 1 or not _cuda() else 16)
    corpus = load_corpus(args.data, skip_invalid=True)
    if corpus.report.skipped_dialogues:
        log.warning("%s: %d invalid dialogues left out (presales data validate lists them)", args.data,
                    len(corpus.report.skipped_dialogues))
    points = replay_points(corpus, args.split, args.max_dialogues)
    if not points:
        raise PresalesError(f"{args.data}: no {args.split} dialogue has a user message followed by a staff turn")
    gold_items = {i for p in points for i in p.gold_items}
    missing = sorted(i for i in gold_items if i not in corpus.items)
    if missing:
        log.warning("%d recommended items are missing from %s/item_kg.txt (e.g. %s): their knowledge checks are "
                    "skipped", len(missing), args.data, ", ".join(missing[:3]))
    report: dict[str, Any] = {"run": str(args.run), "data": str(args.data), "split": args.split, "points": len(points),
                              "dialogues": len({p.sid for p in points}), "missing_items": len(missing),
                              "reply_writer": args.reply_writer, "bf16_prefill": bf16_prefill, "graphs": {}}
    # the run's corpus: its train split is what the trivial policy fits, its items what the graphs' tools read
    run_corpus = load_corpus(RunPaths.from_run(args.run).data, skip_invalid=True, require_splits=False)
    # the replayed corpus's knowledge first, the run's for the rest
    merged = Corpus(corpus.dialogues, {**run_corpus.items, **corpus.items}, corpus.behaviours)
    specs = [GraphSpec(str(args.run), kind, args.reply_writer, bf16_prefill) for kind in kinds]
    log.info("replaying %d turns through %s in %d processes of %d workers", len(points),
             " and ".join(GRAPH_NAMES[k] for k in kinds), processes, workers)
    start = time.perf_counter()
    if processes > 1:
        report["graphs"] = replay_in_processes(specs, points, merged, processes, workers, args.progress)
    else:
        report["graphs"] = {s.kind: replay_graph(s, points, merged, workers, args.progress) for s in specs}
    report["seconds"] = time.perf_counter() - start
    for kind, g in report["graphs"].items():
        report["unknown_to_catalog"] = g.pop("unknown_to_catalog")
        log.info("%s: %d turns in %.1f s (%.2f turns/s), %d failed", kind, len(points), g["seconds"],
                 g["turns_per_s"], g["errors"])
        if g["errors"] == len(points):
            raise PresalesError(f"graph {kind}: every replayed turn failed, first: {g['records'][0]['error']}")
    # the bar to clear, on the same points, fitted on what the run's models trained on
    report["graphs"]["trivial"] = replay_trivial(TrivialPolicy(run_corpus, merged), points, merged)
    report["offline"] = offline_scores(Path(args.run), kinds)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = parse_args(ReplayArgs, argv, prog="presales replay")
    report = replay(args)
    paths = write_report(report, Path(args.out) if args.out else Path(args.run) / "replay")
    print(paths["md"].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
