"""The paper's tables 1-4 from the test metrics of a run directory (scripts/run_default.sh):

    presales eval tables --run runs/default --out runs/default/tables.md

Rows, as in the paper: the baselines, the CRS and the LLM alone ("no collaboration"), the CRS trained
with LLM predictions ("LLM assisting CRS", section 3.5) and the LLM tuned with CRS predictions ("CRS
assisting LLM", section 3.4). Missing runs are left out. A bar chart of the overall figures is saved
beside the tables.

The reply checks (table 4b) are scored again from each run's predictions_test.jsonl on the run's corpus
(RUN/agent.yaml), so every row follows the checks' current definition, whenever its model was trained.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from uneed.arguments import parse_args
from uneed.errors import PresalesError

from .report import task_table

# (row name, file under RUN, how to reach the {task: {group: metrics}} mapping)
METHODS = [
    ("Baselines (lexicon / majority / popularity)", "baselines.json", ()),
    ("CRS", "crs/test_metrics.json", ("test",)),
    ("LLM", "llm/test_metrics.json", ("metrics",)),
    ("LLM assisting CRS", "crs-llm/test_metrics.json", ("test",)),
    ("CRS assisting LLM", "llm-crs/test_metrics.json", ("metrics",)),
    # scripts/cross_fit.sh: the same receivers trained on out-of-fold partner predictions of the train split
    ("LLM assisting CRS, cross-fitted", "crs-llm-xfit/test_metrics.json", ("test",)),
    ("CRS assisting LLM, cross-fitted", "llm-crs-xfit/test_metrics.json", ("metrics",)),
]
TABLES = [
    ("understand", "Table 1: pre-sales dialogue understanding (P / R / F1)"),
    ("elicit", "Table 2: user needs elicitation (P / R / F1)"),
    ("recommend", "Table 3: needs-based recommendation among the 20 candidates (Acc. / H@5 / M@5)"),
    ("recommend_catalog", "Table 3b: recommendation over the whole catalog (H@10 / H@50 / M@50)"),
    ("respond", "Table 4: response generation (BLEU-1/2, Distinct-1/2 on characters)"),
    ("respond_checks", "Table 4b: reply checks (an ask names the attribute or its values; share of stated item "
                       "values that are true; replies repeating an option or phrase back to back)"),
]
HEADLINE = [("understand", "f1"), ("elicit", "f1"), ("recommend", "accuracy"), ("recommend", "mrr@5"),
            ("respond", "bleu-1")]


def load_results(run: Path) -> dict[str, dict]:
    results = {}
    for name, rel, path in METHODS:
        file = run / rel
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PresalesError(f"{file}: not valid JSON ({exc.msg})") from None
        for key in path:
            data = data.get(key, {})
        results[name] = data
    return results


def rescore_reply_checks(run: Path, results: dict[str, dict]) -> list[str]:
    """Table 4b of every row from its test predictions (uneed.replies); the rows rescored."""
    from agent.assistant import run_data_dir
    from uneed.corpus import load_corpus
    from uneed.replies import evaluate_replies
    from uneed.tasks import build_samples, read_predictions

    files = {name: (run / rel).parent / "predictions_test.jsonl" for name, rel, _ in METHODS if name in results}
    files = {name: f for name, f in files.items() if f.is_file()}
    if not files or not (run / "agent.yaml").is_file():
        return []
    corpus = load_corpus(run_data_dir(run))
    test = build_samples(corpus, "test", ["respond"])
    train = build_samples(corpus, "train", ["respond"])
    done = []
    for name, file in files.items():
        replies = read_predictions(file)  # names the file and line of a malformed row
        scored = [s for s in test if s.key in replies]
        if scored:
            results[name]["respond_checks"] = evaluate_replies(scored, [str(replies[s.key]) for s in scored],
                                                               corpus.items, train)
            done.append(name)
    return done


def render(results: dict[str, dict]) -> str:
    parts = []
    for task, title in TABLES:
        rows = {name: res[task] for name, res in results.items() if task in res}
        if rows:
            parts.append(f"### {title}\n\n{task_table(task, rows)}\n")
    return "\n".join(parts)


def plot(results: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        values = [results[name].get(t, {}).get("all", {}).get(m, 0.0) for t, m in HEADLINE]
        ax.bar([x + i * width for x in range(len(HEADLINE))], values, width, label=name)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(HEADLINE))])
    ax.set_xticklabels([f"{t}\n{m}" for t, m in HEADLINE])
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Test figures, all categories")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@dataclass
class TablesArgs:
    """Write the paper's tables 1-4 for the runs of an agent run directory."""

    run: str = field(default="runs/default", metadata={"help": "run directory of scripts/run_default.sh"})
    out: str = field(default="", metadata={"help": "markdown file to write (default: RUN/tables.md)"})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(TablesArgs, argv, prog="presales eval tables")
    run = Path(args.run)
    results = load_results(run)
    if not results:
        raise PresalesError(f"{run}: no test_metrics.json or baselines.json under it; run scripts/run_default.sh")
    rescore_reply_checks(run, results)
    out = Path(args.out) if args.out else run / "tables.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    chart = plot(results, out.with_suffix(".png"))
    out.write_text(render(results) + f"\n![overall figures]({chart.name})\n", encoding="utf-8")
    print(f"wrote {out} and {chart}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
