"""The agent against a simulated shopper (uneed/simulator.py): does it find what the shopper wants?

    presales simulate --run RUN --graph llm|crs|both --episodes N --max-turns T [--seed S] [--out DIR]

Each episode is a shopper with a hidden target item (seeded: the same seed gives the same episodes
and the same words). A policy answers each shopper message; the shopper answers its questions from
the target's knowledge, turns down a wrong item saying which attribute differs, and accepts the
target once it is shown. Per policy, per category and overall:

    success         the target shown within T staff turns
    turns           staff turns until it was shown (successful episodes)
    questions       staff questions per episode, and repeated ones (an attribute asked before)
    target in last  the target in the last recommendation's ranking (share, and its MRR)

Beside the graphs, two reference policies run on the same episodes: `popular` (recommend the most
popular items of the category at once, the next one after each refusal) and `ask-random+crs` (ask
random attributes of the category, `PolicyConfig.max_questions` of them, then recommend with the CRS
alone, from what the CRS understood). Transcripts of the first episodes go in the report.
"""
from __future__ import annotations

import json
import logging
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from agent.policy import PolicyConfig
from uneed.arguments import parse_args
from uneed.corpus import Corpus, Item
from uneed.errors import PresalesError
from uneed.logs import setup_logging
from uneed.metrics import rank_of
from uneed.schema import DOMAINS, STAFF, STAFF_ASK, STAFF_RECOMMEND, USER
from uneed.simulator import Episode, SimulatedShopper, sample_episodes

from .replay import GRAPH_NAMES

log = logging.getLogger("eval.simulate")
SHOWN_TRANSCRIPTS = 3  # per policy, in the markdown report


@dataclass
class StaffTurn:
    action: str  # ask | recommend | explain | close
    reply: str
    asked: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)  # the items shown
    ranking: list[str] = field(default_factory=list)  # the ranking they come from, shown ones first


# ----------------------------------------------------------------------------------------- policies
class GraphPolicy:
    """One of the two graphs, each episode in its own thread."""

    def __init__(self, assistant: Any):
        self.assistant = assistant
        self.name = f"graph {assistant.kind}"

    def start(self, episode: Episode) -> dict:
        from agent.state import new_thread_state

        thread = f"simulate-{self.assistant.kind}-{uuid.uuid4().hex[:8]}-{episode.index}"
        self.assistant.seed_thread(thread, new_thread_state(episode.domain, list(episode.behaviours)))
        return {"thread": thread}

    def turn(self, ctx: dict, text: str) -> StaffTurn:
        from .replay import ACTION_OF_TAG

        result = self.assistant.send(text, thread_id=ctx["thread"])
        staff = result.state["transcript"][-1]
        closed = any(e.get("node") == "close" for e in result.events)
        action = "close" if closed else ACTION_OF_TAG.get(staff.get("act_tag", ""), "explain")
        items = list(staff.get("items", [])) if not closed else []
        ranking = items + [c for c in result.state.get("candidates", []) if c not in items] if items else []
        return StaffTurn(action, result.reply, list(staff.get("asked", [])), items, ranking)


def domain_of_items(corpus: Corpus) -> dict[str, str]:
    """item id -> domain, through the 一级类目 codes of the items the dialogues of each domain recommend."""
    code_domain: dict[str, Counter] = defaultdict(Counter)
    for _split, d in corpus.all_dialogues():
        for t in d.dialogue:
            for i in t.rec_item_id:
                if i in corpus.items and corpus.items[i].category:
                    code_domain[corpus.items[i].category][d.domain] += 1
    codes = {code: c.most_common(1)[0][0] for code, c in code_domain.items()}
    return {i: codes[item.category] for i, item in corpus.items.items() if item.category in codes}


class PopularPolicy:
    """Recommends the most popular items of the category at once (train behaviours and
    recommendations, uneed.baselines.PopularityRecommender), the next one after each refusal."""

    name = "popular"

    def __init__(self, corpus: Corpus, k: int = 3):
        from uneed.baselines import PopularityRecommender

        counts = PopularityRecommender().fit(corpus).counts
        by_domain: dict[str, list[str]] = defaultdict(list)
        for item, domain in domain_of_items(corpus).items():
            by_domain[domain].append(item)
        self.ranked = {d: sorted(items, key=lambda i: (-counts[i], i)) for d, items in by_domain.items()}
        self.k = k

    def start(self, episode: Episode) -> dict:
        return {"ranking": self.ranked.get(episode.domain, []), "next": 0}

    def turn(self, ctx: dict, text: str) -> StaffTurn:
        ranking = ctx["ranking"][ctx["next"]:ctx["next"] + self.k]
        ctx["next"] += 1
        if not ranking:
            return StaffTurn("explain", "暂时没有更多推荐了")
        return StaffTurn("recommend", f"【商品 {ranking[0]}】这款卖得最好哦", items=ranking[:1],
                         ranking=ranking)


class RandomAskCRSPolicy:
    """Asks `questions` random attributes of the category (those annotated in its train dialogues),
    then recommends with the CRS alone: its understanding of each message, its ranking of the catalog."""

    name = "ask-random+crs"

    def __init__(self, crs: Any, corpus: Corpus, questions: int = 3, k: int = 3):
        self.crs = crs
        self.questions = questions
        self.k = k
        attrs: dict[str, set[str]] = defaultdict(set)
        for d in corpus.split("train"):
            for t in d.dialogue:
                attrs[d.domain].update(a.key for a in t.attributes)
        self.attributes = {d: sorted(a) for d, a in attrs.items()}

    def start(self, episode: Episode) -> dict:
        return {"rng": random.Random(episode.seed), "domain": episode.domain, "behaviours": list(episode.behaviours),
                "transcript": [], "needs": [], "asked": [], "shown": []}

    def turn(self, ctx: dict, text: str) -> StaffTurn:
        from uneed.tasks import Utterance

        ctx["transcript"].append(Utterance(USER, text, ""))
        tags = self.crs.understand([ctx["transcript"]])[0]
        ctx["transcript"][-1].tags = tags
        ctx["needs"] += [tuple(t.split("：", 1)) for t in tags if "：" in t and t.split("：", 1)[1]]
        left = [a for a in self.attributes.get(ctx["domain"], []) if a not in ctx["asked"]]
        if len(ctx["asked"]) < self.questions and left:
            attribute = ctx["rng"].choice(left)
            ctx["asked"].append(attribute)
            reply = f"亲，请问{attribute}有什么要求呢"
            ctx["transcript"].append(Utterance(STAFF, reply, STAFF_ASK, tags=[f"{attribute}："],
                                               asked=[attribute]))
            return StaffTurn("ask", reply, asked=[attribute])
        ranked = self.crs.recommend([ctx["transcript"]], [ctx["needs"]], [ctx["behaviours"]], k=self.k,
                                    exclude=[ctx["shown"]], domains=[ctx["domain"]])[0]
        ranking = [s.item_id for s in ranked]
        if not ranking:
            return StaffTurn("explain", "暂时没有更多推荐了")
        ctx["shown"].append(ranking[0])
        reply = f"【商品 {ranking[0]}】这款很适合您"
        ctx["transcript"].append(Utterance(STAFF, reply, STAFF_RECOMMEND, items=ranking[:1]))
        return StaffTurn("recommend", reply, items=ranking[:1], ranking=ranking)


# ----------------------------------------------------------------------------------------- episodes
def run_episode(policy: Any, episode: Episode, items: Mapping[str, Item], max_turns: int) -> dict:
    shopper = SimulatedShopper.for_episode(episode, items)
    ctx = policy.start(episode)
    text = shopper.opening()
    transcript: list[dict] = [{"speaker": "shopper", "text": text}]
    asked_before: set[str] = set()
    questions = repeated = recommendations = 0
    last_ranking: list[str] | None = None
    success_turn = None
    for turn_no in range(1, max_turns + 1):
        staff = policy.turn(ctx, text)
        transcript.append({"speaker": "agent", "text": staff.reply, "action": staff.action, "asked": staff.asked,
                           "items": staff.items})
        if staff.action == "ask":
            questions += 1
            repeated += bool(set(staff.asked) & asked_before)
            asked_before.update(staff.asked)
        if staff.items:
            recommendations += 1
            last_ranking = staff.ranking
        if episode.target in staff.items:
            success_turn = turn_no
            _, text = shopper.react(episode.target, items, episode.target)
            transcript.append({"speaker": "shopper", "text": text})
            closing = policy.turn(ctx, text)  # the agent's answer to the acceptance, for the transcript
            transcript.append({"speaker": "agent", "text": closing.reply, "action": closing.action})
            break
        if staff.items:
            _, text = shopper.react(staff.items[0], items, episode.target)
        elif staff.action == "ask":
            text = shopper.answer(staff.asked)
        else:
            text = shopper.volunteer()
        transcript.append({"speaker": "shopper", "text": text})
    rank = rank_of(episode.target, last_ranking) if last_ranking else None
    return {"episode": episode.index, "domain": episode.domain, "target": episode.target, "seed": episode.seed,
            "source": episode.source, "success": success_turn is not None, "turns": success_turn,
            "questions": questions, "repeated_questions": repeated, "recommendations": recommendations,
            "target_rank_last": rank, "stated": [list(s) for s in shopper.stated], "transcript": transcript}


def summarize(results: Sequence[dict]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        groups["all"].append(r)
        groups[r["domain"]].append(r)
    out = {}
    for g in sorted(groups, key=lambda g: (g != "all", list(DOMAINS).index(g) if g in DOMAINS else 99, g)):
        rs = groups[g]
        wins = [r for r in rs if r["success"]]
        ranked = [r["target_rank_last"] for r in rs]
        out[g] = {"episodes": len(rs), "success": len(wins) / len(rs),
                  "turns_to_success": sum(r["turns"] for r in wins) / len(wins) if wins else None,
                  "questions": sum(r["questions"] for r in rs) / len(rs),
                  "repeated_questions": sum(r["repeated_questions"] for r in rs) / len(rs),
                  "recommendations": sum(r["recommendations"] for r in rs) / len(rs),
                  "target_in_last": sum(x is not None for x in ranked) / len(rs),
                  "target_mrr_last": sum(1 / (x + 1) for x in ranked if x is not None) / len(rs)}
    return out


def simulate_policy(policy: Any, episodes: Sequence[Episode], items: Mapping[str, Item], max_turns: int,
                    workers: int, models: Sequence[Any] = (), llms: Sequence[Any] = (), progress: bool = True) -> dict:
    from .batching import CallBatcher, batch_models, run_concurrently

    batcher = CallBatcher()
    batch_models(batcher, models, llms)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(episodes), desc=f"simulate {policy.name}", unit="episode")
    jobs = [lambda e=e: run_episode(policy, e, items, max_turns) for e in episodes]
    start = time.perf_counter()
    try:
        results = run_concurrently(jobs, workers, batcher, on_done=(lambda _i, _r: bar.update(1)) if bar else None)
    finally:
        batcher.restore()
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    failed = [(e, r) for e, r in zip(episodes, results) if isinstance(r, Exception)]
    if failed:
        log.warning("%s: %d of %d episodes failed, first: %s: %s", policy.name, len(failed), len(episodes),
                    type(failed[0][1]).__name__, failed[0][1])
    done = [r for r in results if not isinstance(r, Exception)]
    if not done:
        raise PresalesError(f"{policy.name}: every episode failed, first: {failed[0][1]}")
    return {"summary": summarize(done), "episodes": done, "failed": len(failed), "seconds": seconds}


# ----------------------------------------------------------------------------------------- report
COLUMNS = [("success", "success"), ("turns_to_success", "turns to success"), ("questions", "questions"),
           ("repeated_questions", "repeated questions"), ("recommendations", "recommendations"),
           ("target_in_last", "target in last rec."), ("target_mrr_last", "MRR in last rec.")]


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def render_markdown(report: dict) -> str:
    pols = report["policies"]
    lines = [f"# Simulated shoppers against `{report['run']}`", "",
             f"{report['episodes']} episodes (seed {report['seed']}, at most {report['max_turns']} agent turns each), "
             "the same episodes for every policy"
             + (". Graph 1's replies are written by " + ("the instruction-tuned LLM." if report.get("reply_writer", "controller")
                                                         == "llm" else "its controller.")
                if "graph llm" in pols else "."), "",
             "| policy | episodes | " + " | ".join(c for _, c in COLUMNS) + " | seconds |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for name, p in pols.items():
        row = p["summary"]["all"]
        lines.append(f"| {name} | {row['episodes']} | " + " | ".join(_fmt(row[k]) for k, _ in COLUMNS)
                     + f" | {p['seconds']:.1f} |")
    lines += ["", "## Per category", "", "| policy | category | episodes | " + " | ".join(c for _, c in COLUMNS) + " |",
              "|---" * (len(COLUMNS) + 3) + "|"]
    for name, p in pols.items():
        for g, row in p["summary"].items():
            if g == "all":
                continue
            lines.append(f"| {name} | {DOMAINS.get(g, g)} {g} | {row['episodes']} | "
                         + " | ".join(_fmt(row[k]) for k, _ in COLUMNS) + " |")
    lines += ["", "## Transcripts", ""]
    for name, p in pols.items():
        for ep in p["episodes"][:SHOWN_TRANSCRIPTS]:
            outcome = f"found at turn {ep['turns']}" if ep["success"] else "not found"
            lines += [f"**{name}, episode {ep['episode']}** ({ep['domain']}, target {ep['target']}: {outcome})", "", "```"]
            for t in ep["transcript"]:
                asked = " " + "、".join(t["asked"]) if t.get("asked") else ""
                tag = f" [{t['action']}{asked}]" if t["speaker"] == "agent" else ""
                lines.append(f"{t['speaker']}{tag}: {t['text']}")
            lines += ["```", ""]
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "simulate.md", "json": out / "simulate.json", "jsonl": out / "simulate_episodes.jsonl"}
    with paths["jsonl"].open("w", encoding="utf-8") as fh:
        for name, p in report["policies"].items():
            for ep in p["episodes"]:
                fh.write(json.dumps({"policy": name, **ep}, ensure_ascii=False) + "\n")
    summary = {**report, "policies": {n: {k: v for k, v in p.items() if k != "episodes"}
                                      for n, p in report["policies"].items()}}
    paths["json"].write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    return paths


# ----------------------------------------------------------------------------------------- command
@dataclass
class SimulateArgs:
    """Simulated shoppers with hidden target items against the graphs and two reference policies."""

    run: str = field(default="runs/default", metadata={"help": "agent run directory (scripts/run_default.sh)"})
    graph: str = field(default="both", metadata={"help": "llm | crs | both"})
    episodes: int = field(default=100, metadata={"help": "episodes per policy"})
    max_turns: int = field(default=8, metadata={"help": "agent turns per episode"})
    seed: int = field(default=0, metadata={"help": "the same seed gives the same episodes and words"})
    split: str = field(default="test", metadata={"help": "the split whose dialogues give the targets"})
    references: bool = field(default=True, metadata={"help": "also run the two reference policies"})
    workers: int = field(default=16, metadata={"help": "episodes run at once (their model calls are batched)"})
    out: str = field(default="", metadata={"help": "report directory (default: RUN/simulate)"})
    progress: bool = field(default=True, metadata={"help": "progress bars on the terminal"})
    reply_writer: str = field(default=PolicyConfig.reply_writer, metadata={"help": "graph 1's replies: llm (the "
                                                                                 "instruction-tuned LLM writes "
                                                                                 "them) | controller (its own text)"})


def simulate(args: SimulateArgs) -> dict:
    from agent.assistant import GRAPHS, Assistant, RunPaths, memory_checkpointer
    from uneed.corpus import load_corpus

    kinds = list(GRAPHS) if args.graph == "both" else [args.graph]
    if any(k not in GRAPHS for k in kinds):
        raise PresalesError(f"--graph must be llm, crs or both, got {args.graph!r}")
    for name in ("episodes", "max_turns", "workers"):
        if getattr(args, name) < 1:
            raise PresalesError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    corpus = load_corpus(RunPaths.from_run(args.run).data, skip_invalid=True)
    try:
        episodes = sample_episodes(corpus, args.episodes, args.seed, args.split)
    except ValueError as exc:
        raise PresalesError(str(exc)) from None
    report: dict[str, Any] = {"run": str(args.run), "reply_writer": args.reply_writer, "episodes": len(episodes),
                              "max_turns": args.max_turns,
                              "seed": args.seed, "policies": {}}
    crs_alone = None
    for kind in kinds:
        assistant = Assistant.from_run(args.run, kind, checkpointer=memory_checkpointer(),
                                       policy=PolicyConfig(reply_writer=args.reply_writer))
        log.info("simulating %d episodes with %s", len(episodes), GRAPH_NAMES[kind])
        report["policies"][f"graph {kind}"] = simulate_policy(
            GraphPolicy(assistant), episodes, corpus.items, args.max_turns, args.workers,
            [assistant.models["crs"]], assistant.llms, args.progress)
        if kind == "llm":
            crs_alone = assistant.models["crs"]  # graph 1 recommends with the plain CRS
    if args.references:
        if crs_alone is None:
            from agent.assistant import load_crs

            crs_alone = load_crs(RunPaths.from_run(args.run).crs, corpus)  # with the category filter's groups
        report["policies"]["popular"] = simulate_policy(PopularPolicy(corpus), episodes, corpus.items, args.max_turns,
                                                        1, progress=args.progress)
        report["policies"]["ask-random+crs"] = simulate_policy(
            RandomAskCRSPolicy(crs_alone, corpus, PolicyConfig().max_questions), episodes, corpus.items,
            args.max_turns, args.workers, [crs_alone], progress=args.progress)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = parse_args(SimulateArgs, argv, prog="presales simulate")
    report = simulate(args)
    paths = write_report(report, Path(args.out) if args.out else Path(args.run) / "simulate")
    print(paths["md"].read_text(encoding="utf-8").split("## Transcripts")[0])
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
