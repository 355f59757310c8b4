"""`presales`: the command line of the project. Every command has --help.

    presales data validate DIR [--skip-invalid]     check a U-NEED-format directory
    presales data stats DIR [--json]                dialogues, turns, act tags, attributes, items, behaviours
    presales data synth --out DIR --scale small     write the embedded corpus
    presales data baselines DIR                     lexicon / majority / popularity baselines on a split
    presales data compare REAL OTHER                realism report: two directories side by side
    presales train crs|llm-base|llm|controller ARGS training scripts (each has its own --help)
    presales eval tables --run RUN                  the paper's tables from a run's test metrics
    presales eval llm --run RUN --data DIR          score a fine-tuned LLM on one split
    presales chat --graph llm|crs --run RUN         step-by-step conversation with either graph
    presales replay --data DIR --run RUN            the graphs replayed on U-NEED dialogues, against the staff
    presales simulate --run RUN --episodes N        the graphs against simulated shoppers with hidden targets
    presales serve --run RUN [--db URL] [--api-key K] the HTTP agent endpoint and its chat page

Errors a user can fix are printed as one clear message with a non-zero exit, never a traceback.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Optional

import click
import typer
from rich.console import Console
from rich.table import Table

from uneed.errors import PresalesError
from uneed.logs import setup_logging

try:  # recent typer releases vendor their own click and raise its exceptions
    from typer.exceptions import TyperException

    USAGE_ERRORS: tuple[type[Exception], ...] = (click.ClickException, TyperException)
except ImportError:  # older ones (typer 0.15) raise click's own
    USAGE_ERRORS = (click.ClickException,)

app = typer.Typer(help="CRS and LLM for e-commerce pre-sales dialogue (U-NEED).", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="U-NEED-format data: validate, stats, synthesize, baselines.", no_args_is_help=True)
train_app = typer.Typer(help="Train the models (each subcommand has its own --help).", no_args_is_help=True)
eval_app = typer.Typer(help="Score runs and write the paper's tables (each subcommand has its own --help).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


# ------------------------------------------------------------------------------------------- data
@data_app.command("validate")
def data_validate(
    directory: Path = typer.Argument(..., help="A directory in the U-NEED release format."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Load the valid rest and report what was skipped."),
    show: int = typer.Option(20, help="How many issues to print."),
) -> None:
    """Check every file of DIR: schema, act tags, sender types, spans, seq_no order, item ids."""
    from uneed.corpus import load_corpus

    corpus = load_corpus(directory, skip_invalid=skip_invalid)
    report = corpus.report
    sizes = ", ".join(f"{s} {len(corpus.split(s))}" for s in ("train", "valid", "test"))
    console.print(f"OK {directory}: dialogues {sizes}; items {len(corpus.items)}; "
                  f"behaviour users {len(corpus.behaviours)}")
    if report.skipped_dialogues or report.skipped_rows:
        console.print(f"skipped {len(report.skipped_dialogues)} invalid dialogues and "
                      f"{len(report.skipped_rows)} invalid rows:")
        for issue in report.errors[:show]:
            console.print(f"  {issue}", markup=False)
    if report.warnings:
        console.print(f"{len(report.warnings)} warnings:")
        for line in report.warning_summary():
            console.print(f"  {line}", markup=False)


@data_app.command("stats")
def data_stats(
    directory: Path = typer.Argument(..., help="A directory in the U-NEED release format."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Count only the valid dialogues."),
) -> None:
    """Dialogues, turns, act tags, attributes, items and behaviours, overall and per category."""
    from uneed.corpus import load_corpus
    from uneed.stats import corpus_stats

    stats = corpus_stats(load_corpus(directory, skip_invalid=skip_invalid))
    if as_json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
        return
    groups = list(stats)
    table = Table(title=f"U-NEED statistics of {directory}")
    table.add_column("")
    for g in groups:
        table.add_column(g, justify="right")
    rows = list(dict.fromkeys(k for g in groups for k in stats[g]))
    for row in rows:
        table.add_row(row, *[str(stats[g].get(row, "")) for g in groups])
    console.print(table)


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="Directory to write (created if missing)."),
    scale: str = typer.Option("small", help="tiny | small | full (full = the release's sizes)."),
    seed: int = typer.Option(0, help="Random seed; the same seed writes the same bytes."),
) -> None:
    """Write the embedded U-NEED-format corpus."""
    from uneed.synth import SCALES, synthesize

    if scale not in SCALES:
        raise PresalesError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    counts = synthesize(out, scale=scale, seed=seed)
    console.print(f"wrote {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@data_app.command("baselines")
def data_baselines(
    directory: Path = typer.Argument(..., help="A directory in the U-NEED release format."),
    split: str = typer.Option("test", help="Split to score: train | valid | test."),
) -> None:
    """Train-set lexicon matcher, majority elicitor and popularity recommender on SPLIT, and the gold-needs
    reference rule (recommend_gold_needs: how much the annotated needs decide the item); popularity that skips
    the items the dialogue already recommended (recommend_popularity_unseen)."""
    from uneed.baselines import evaluate_baselines
    from uneed.corpus import load_corpus

    results = evaluate_baselines(load_corpus(directory), split)
    print(json.dumps(results, ensure_ascii=False, indent=2))


@data_app.command("compare")
def data_compare(
    real: Path = typer.Argument(..., help="The reference directory (e.g. the real U-NEED samples)."),
    other: Path = typer.Argument(..., help="The directory to hold against it (e.g. data/small)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Compare only the valid dialogues."),
) -> None:
    """Realism report: REAL and OTHER side by side (lengths, repetition, act structure, keys, transfer)."""
    from uneed.compare import compare
    from uneed.corpus import load_corpus

    rows = compare(load_corpus(real, skip_invalid=skip_invalid), load_corpus(other, skip_invalid=skip_invalid))
    if as_json:
        print(json.dumps([{"label": r.label, "real": r.real, "other": r.other} for r in rows],
                         ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{real} vs {other}")
    table.add_column("")
    table.add_column(str(real))
    table.add_column(str(other))
    for r in rows:
        table.add_row(r.label, str(r.real), str(r.other))
    console.print(table)


# ------------------------------------------------------------------------------------------ train
PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
TRAIN_SCRIPTS = {
    "crs": ("training.crs", "Train the unified CRS (section 3.3; with --llm-predictions, section 3.5)."),
    "llm-base": ("training.llm_base", "Pre-train the embedded causal LM on the corpus text."),
    "llm": ("training.llm", "LoRA instruction tuning of the LLM (section 3.2; --crs-predictions: 3.4)."),
    "controller": ("training.controller", "Fine-tune the LLM as the tool-calling controller of graph 1."),
}


def _run_script(module: str, argv: list[str]) -> None:
    code = importlib.import_module(module).main(argv)
    if code:
        raise typer.Exit(code)


EVAL_SCRIPTS = {
    "tables": ("eval.tables", "The paper's tables 1-4 (and a chart) from a run directory's test metrics."),
    "llm": ("eval.llm_eval", "Score a fine-tuned LLM on one split (e.g. with --span-values false)."),
}

for _group, _scripts in ((train_app, TRAIN_SCRIPTS), (eval_app, EVAL_SCRIPTS)):
    for _name, (_module, _help) in _scripts.items():
        def _command(ctx: typer.Context, _module: str = _module) -> None:
            _run_script(_module, list(ctx.args))

        _group.command(_name, help=_help + " Run with --help for its arguments.", context_settings=PASSTHROUGH)(_command)


# ------------------------------------------------------------------------------------------- chat
@app.command("chat")
def chat(
    graph: str = typer.Option("llm", help="llm: the LLM controls and calls CRS tools; crs: the CRS controls and calls the LLM."),
    run: Path = typer.Option(Path("runs/default"), help="Agent run directory (scripts/run_default.sh writes runs/default)."),
    category: Optional[str] = typer.Option(None, help="美妆行业 | 手机行业 | 服装行业 | 鞋类行业 | 大家电行业 (default: 美妆行业)."),
    thread: Optional[str] = typer.Option(None, help="Thread id: continue a conversation (default: a new one)."),
    trace: Optional[Path] = typer.Option(None, help="Append every step as a JSON line to this file."),
    user: Optional[str] = typer.Option(None, help="A user id of the corpus whose behaviours the recommender may use."),
    db: Optional[Path] = typer.Option(None, help="SQLite file of the threads (default: RUN/threads.sqlite)."),
) -> None:
    """Talk to the agent step by step: every node, tool call, the needs so far and the reply."""
    from agent.chat import run_chat

    run_chat(graph, run, category, thread, trace, user, db)


# ------------------------------------------------------------------------------- replay, simulate
AGENT_EVAL_SCRIPTS = {
    "replay": ("eval.replay", "Replay U-NEED dialogues through the graphs, turn by turn against the staff "
                              "(--data DIR --run RUN --graph llm|crs|both --split test --out REPORT_DIR)."),
    "simulate": ("eval.simulate", "Simulated shoppers with hidden target items against the graphs and two reference "
                                  "policies (--run RUN --graph llm|crs|both --episodes N --max-turns T --seed S)."),
}
for _name, (_module, _help) in AGENT_EVAL_SCRIPTS.items():
    def _agent_eval(ctx: typer.Context, _module: str = _module) -> None:
        _run_script(_module, list(ctx.args))

    app.command(_name, help=_help + " Run with --help for its arguments.", context_settings=PASSTHROUGH)(_agent_eval)
# ------------------------------------------------------------------------------------------ serve
@app.command("serve")
def serve(
    run: Path = typer.Option(Path("runs/default"), help="Agent run directory (scripts/run_default.sh writes runs/default)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8123, help="Port to listen on."),
    db: Optional[str] = typer.Option(None, help="Threads database: a SQLite file (default: RUN/threads.sqlite) or a postgresql:// URL."),
    api_key: Optional[list[str]] = typer.Option(None, "--api-key", help="Require this key (x-api-key header); repeat for several. Default: none."),
    graph: Optional[list[str]] = typer.Option(None, "--graph", help="Serve only this graph (llm | crs); repeat for both. Default: both."),
) -> None:
    """The HTTP agent endpoint (Agent Protocol routes, as LangGraph's server) with a chat page at /."""
    from server.serve import serve as run_server

    run_server(run, host, port, db, api_key or (), graph or ("llm", "crs"))


# ------------------------------------------------------------------------------------------- main
def main(argv: Optional[list[str]] = None) -> int:
    setup_logging()
    try:
        # Outside standalone mode an Exit becomes the return value: a script's exit code lands here.
        code = app(args=argv, standalone_mode=False, prog_name="presales")
    except PresalesError as exc:
        err_console.print(f"error: {exc}", markup=False)
        return 2
    except (click.exceptions.Exit, typer.Exit) as exc:
        return exc.exit_code
    except (click.exceptions.Abort, typer.Abort):
        err_console.print("aborted")
        return 130
    except USAGE_ERRORS as exc:
        # usage errors (unknown option, missing argument) come from click or from typer's own copy of it
        if hasattr(exc, "show"):
            exc.show()
            return getattr(exc, "exit_code", 2)
        err_console.print(f"error: {exc}", markup=False)
        return 2
    except FileNotFoundError as exc:
        err_console.print(f"error: {exc}", markup=False)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        err_console.print(f"internal error: {type(exc).__name__}: {exc} (set PRESALES_DEBUG=1 for the traceback)",
                          markup=False)
        if __import__("os").environ.get("PRESALES_DEBUG"):
            raise
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
