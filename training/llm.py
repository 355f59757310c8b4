"""Instruction-tune the LLM with LoRA on the four U-NEED tasks (section 3.2), optionally with CRS
predictions in the instructions and inputs (section 3.4, CRS assisting LLM).

    presales train llm --data data/small --out runs/llm [--base-model runs/llm-base]
                       [--crs-predictions runs/crs/predictions_train.jsonl | runs/crs] [--merge] [--resume]

Data: every sample of --tasks in the train split becomes an appendix-F record
(uneed.tasks.llm_record; at most 20 candidates, lettered A-T), wrapped in the prompt template
(llm.prompts, default 'zh'); the loss covers the output tokens (+ EOS) only. Long prompts lose
their oldest dialogue turns first (see llm/prompts.py for the exact rule).

--crs-predictions FILE|DIR: a prediction file (uneed.tasks.read_predictions) or a directory of
predictions_{train,valid,test}.jsonl. Samples with a prediction get the CRS instruction sentence and
the CRS output (text, or the lettered ranking for recommend); samples missing from it are counted,
a warning is logged, and their plain record is used - the same at training, validation and test.

Run directory:
    config.yaml, log.jsonl (per epoch: train_loss, valid_loss, valid/<task>/<metric>), curves.png
    checkpoint/       latest adapter + optimizer state, for --resume
    best/             adapter with the lowest validation loss
    adapter/          the final adapter (= best) + tokenizer + presales_llm.json (base model, prompt settings,
                      with the recommendation's letter prior and its weight fitted on valid: llm/letters.py)
    merged/           with --merge: base + adapter merged, a plain HF model directory
    test_metrics.json test-split metrics of the four tasks, overall and per category; recommend_prior: the
                      fitted weight, valid accuracy at each weight, and test accuracy at each (not used to choose)
    predictions_{split}.jsonl   LLM predictions (LLM assisting CRS); recommend -> [item_id].
                      valid and test by default (--predict-splits); train only with --predict-train N
                      (N samples, -1 for all; 4-task generation over the whole train split is slow).
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch

from llm.model import plain_lm_head
from training import distributed
from training.loop import Epoch, TrainLoop, cosine_schedule, length_batches, load_trainer_state, save_trainer_state
from training.runtime import RunDir, autocast, pick_device, replace_dir, set_seed, staging_dir
from uneed.arguments import parse_args
from uneed.candidates import popularity_counts
from uneed.device import pad_multiple
from uneed.errors import PresalesError
from uneed.logs import setup_logging
from uneed.tasks import first_per_task, load_crs_predictions

log = logging.getLogger("training.llm")

ALL_TASKS = ["understand", "elicit", "recommend", "respond"]


@dataclass
class LLMTrainArgs:
    """Instruction-tune the LLM with LoRA on the four pre-sales tasks."""

    data: str = field(metadata={"help": "U-NEED-format corpus directory"})
    out: str = field(metadata={"help": "run directory"})
    base_model: str = field(default="runs/llm-base", metadata={"help": "local HF causal-LM dir, or a "
                                                                        "`train llm-base` run dir"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow model code from --base-model (ChatGLM)"})
    crs_predictions: str | None = field(default=None, metadata={"help": "CRS prediction file or directory "
                                                                         "(section 3.4)"})
    tasks: list[str] = field(default_factory=lambda: list(ALL_TASKS))
    template: str = field(default="zh", metadata={"help": "prompt template: zh, alpaca, or a format string"})
    max_length: int = field(default=1024, metadata={"help": "tokens of prompt + answer"})
    candidate_order: str = field(default="popularity", metadata={"help": "how a recommendation prompt letters its "
                                                                     "candidates: popularity (most popular first, as "
                                                                     "the popularity baseline ranks them) or data (the "
                                                                     "corpus's order); a CRS ranking comes first"})
    item_relations: int | None = field(default=None, metadata={"help": "at most N relations per candidate item "
                                                                        "in the input (default: all)"})
    new_tokens_understand: int = 40
    new_tokens_elicit: int = 16
    new_tokens_recommend: int = 4
    new_tokens_respond: int = 64
    context_turns_understand: int | None = field(default=None, metadata={"help": "at most N latest dialogue turns in "
                                                                               "the understanding prompt (default: "
                                                                               "all that fit)"})
    context_turns_elicit: int | None = None
    context_turns_recommend: int | None = None
    context_turns_respond: int | None = None
    max_train_recommend: int = field(default=0, metadata={"help": "train on at most N recommendation samples (a "
                                                                  "seeded subset; 0: all): their prompts list 20 "
                                                                  "candidates and are the longest by far"})
    repeat_understand: int = field(default=1, metadata={"help": "each understanding example appears N times per "
                                                                "epoch (copying spans needs more passes than the "
                                                                "other tasks)"})
    repeat_elicit: int = 1
    repeat_recommend: int = 1
    repeat_respond: int = 1
    repeat_ask_replies: int = field(default=1, metadata={"help": "each reply that asks for an attribute (the staff's "
                                                                 "系统提问) appears N times per epoch, times "
                                                                 "--repeat-respond: once, the LLM's questions asked for "
                                                                 "the brand whatever attribute the prompt named"})
    faithful_replies: bool = field(default=True, metadata={"help": "train on the replies without their clauses that "
                                                                  "state a value untrue of their items, or any value "
                                                                  "where their items' knowledge gives none "
                                                                  "(uneed.replies.faithful_targets)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank; 0: full fine-tuning (every weight trains: the "
                                                      "right setup for the few-million-parameter embedded base)"})
    lora_alpha: int = 32
    lora_dropout: float = field(default=0.0, metadata={"help": "0 is ~1.5x faster on CPU (no dropout copy per layer)"})
    lora_targets: list[str] = field(default_factory=lambda: ["all-linear"],
                                    metadata={"help": "module names, or all-linear"})
    epochs: int = 2
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_train_samples: int = field(default=4000, metadata={"help": "use a seeded random subset of N train samples "
                                                                   "(0: all; the default fits the 15-minute CPU "
                                                                   "budget on the small corpus)"})
    max_valid_samples: int = field(default=256, metadata={"help": "samples for the validation loss (0: all)"})
    val_generate: int = field(default=48, metadata={"help": "valid samples (spread over tasks) generated each "
                                                            "epoch for validation metrics (0: none)"})
    eval_batch_size: int = 16
    max_test_samples: int = field(default=0, metadata={"help": "test samples scored at the end (0: all)"})
    predict_splits: list[str] = field(default_factory=lambda: ["valid", "test"])
    predict_train: int = field(default=0, metadata={"help": "also predict N train samples (-1: all, 0: none)"})
    max_predict_per_task: int = field(default=0, metadata={"help": "valid and test predictions: the first N samples "
                                                                   "of each task (0: all), those a CRS trained with "
                                                                   "the same --max-predict-samples predicts"})
    cross_fit: str = field(default="", metadata={"help": "i/K: train on the train dialogues outside fold i of K and "
                                                       "predict all train samples of fold i (out-of-fold partner "
                                                       "predictions, scripts/cross_fit.sh; replaces --predict-train)"})
    merge: bool = field(default=False, metadata={"help": "also save base + adapter merged to RUN/merged"})
    max_minutes: float = field(default=10.0, metadata={"help": "stop training after this many minutes (0: no limit)"})
    max_steps: int = field(default=0, metadata={"help": "stop after N optimizer steps (0: no limit; for smoke "
                                                         "tests)"})
    save_steps: int = 200
    log_steps: int = 20
    skip_invalid: bool = False
    seed: int = 42
    device: str = "auto"
    bf16: bool | None = None
    num_threads: int = 0
    resume: bool = False
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run at --out (kept until the new one has finished)"})
    progress: bool = True

    def prompt_settings(self):
        from llm.prompts import PromptSettings

        return PromptSettings(template=self.template, max_length=self.max_length, item_relations=self.item_relations,
                              max_new_tokens={"understand": self.new_tokens_understand,
                                              "elicit": self.new_tokens_elicit,
                                              "recommend": self.new_tokens_recommend,
                                              "respond": self.new_tokens_respond},
                              context_turns={t: n for t, n in (("understand", self.context_turns_understand),
                                                               ("elicit", self.context_turns_elicit),
                                                               ("recommend", self.context_turns_recommend),
                                                               ("respond", self.context_turns_respond)) if n is not None})


# ------------------------------------------------------------------------------------ CRS predictions
def attach_crs(samples, predictions: Mapping[str, object] | None, split: str, stats: dict) -> dict[str, object]:
    """The predictions of these samples; missing ones are counted (stats) and warned about."""
    if predictions is None:
        return {}
    found = {s.key: predictions[s.key] for s in samples if s.key in predictions}
    missing = len(samples) - len(found)
    stats[split] = {"samples": len(samples), "with_crs": len(found), "missing": missing}
    if missing:
        log.warning("CRS predictions missing for %d of %d %s samples: their plain records are used", missing,
                    len(samples), split)
    return found


# ------------------------------------------------------------------------------------ examples
def build_examples(samples, items, tokenizer, settings, crs: Mapping[str, object]) -> tuple[list[dict], int]:
    from llm.prompts import encode_example, fit_record, render_prompt

    examples, cut = [], 0
    for s in samples:
        record, note = fit_record(s, items, tokenizer, settings, crs.get(s.key))
        cut += note is not None
        ex = encode_example(render_prompt(record, settings.template), record["output"], tokenizer,
                            settings.new_tokens(s.task))
        ex["task"] = s.task
        ex["asks"] = s.task == "respond" and bool(s.asked)  # a question (what --repeat-ask-replies repeats)
        examples.append(ex)
    return examples, cut


@torch.no_grad()
def examples_loss(model, examples, batch_size: int, pad_id: int, device, bf16, keep_logits: bool = False) -> float:
    if not examples:
        return float("nan")
    model.eval()
    total, count = 0.0, 0
    for batch in length_batches([len(e["input_ids"]) for e in examples], batch_size, 0, shuffle=False):
        t = collate_batch(examples, batch, pad_id, device)
        with autocast(device, bf16):
            loss, n = answer_loss(model, t, keep_logits)
        total += float(loss) * n
        count += n
    model.train()
    return total / max(1, count)


def spread(samples, n: int) -> list:
    """Up to n samples, the same number from each task (the first ones, so epochs compare)."""
    if n <= 0:
        return []
    by_task: dict[str, list] = {}
    for s in samples:
        by_task.setdefault(s.task, []).append(s)
    per = max(1, math.ceil(n / max(1, len(by_task))))
    return [s for group in by_task.values() for s in group[:per]]


def limit(samples: list, n: int, seed: int) -> list:
    if n <= 0 or len(samples) <= n:
        return samples
    import random

    keep = sorted(random.Random(seed).sample(range(len(samples)), n))
    return [samples[i] for i in keep]


def limit_task(samples: list, task: str, n: int, seed: int) -> list:
    """`samples` with at most n of `task` (a seeded subset), the others all kept, in their order."""
    kept = set(limit([i for i, s in enumerate(samples) if s.task == task], n, seed))
    return [s for i, s in enumerate(samples) if s.task != task or i in kept]


# ------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(LLMTrainArgs, argv, prog="presales train llm")
    setup_logging()
    from peft import LoraConfig, PeftModel, get_peft_model

    from llm.evaluation import evaluate_llm, flat_metrics
    from llm.inference import LLM
    from llm.model import count_parameters, load_base, resolve_base_dir, save_llm_config
    from uneed.corpus import load_corpus
    from uneed.replies import describe_cuts, faithful_targets
    from uneed.tasks import build_samples, parse_cross_fit, split_by_fold, write_predictions

    unknown = set(args.tasks) - set(ALL_TASKS)
    if unknown:
        raise PresalesError(f"unknown task(s) {sorted(unknown)}; choose from {ALL_TASKS}")
    repeats = {t: getattr(args, f"repeat_{t}") for t in ALL_TASKS}
    bad = [f"--repeat-{t} {n}" for t, n in repeats.items() if n < 1]
    bad += [f"--repeat-ask-replies {args.repeat_ask_replies}"] if args.repeat_ask_replies < 1 else []
    if bad:
        raise PresalesError(f"{', '.join(bad)}: each example appears at least once per epoch (N >= 1)")
    if args.candidate_order not in ("popularity", "data"):
        raise PresalesError(f"--candidate-order must be popularity or data, got {args.candidate_order!r}")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    set_seed(args.seed)
    dist = distributed.setup(args.device)  # one process, or data-parallel under torchrun
    device = pick_device(args.device)
    use_bf16 = args.bf16 if args.bf16 is not None else (device.type == "cuda" and torch.cuda.is_bf16_supported())
    run = RunDir.staged(args.out, overwrite=args.overwrite, resume=args.resume)
    t_start = time.time()

    base_dir = resolve_base_dir(args.base_model)
    if not base_dir.exists():
        raise PresalesError(f"--base-model {args.base_model}: no such directory (run `presales train llm-base` "
                            "first, or pass a local Hugging Face model directory)")
    cross_fit = parse_cross_fit(args.cross_fit)
    if cross_fit and args.predict_train:
        raise PresalesError("--cross-fit predicts the held-out fold of the train split; leave --predict-train at 0")
    corpus = load_corpus(args.data, skip_invalid=args.skip_invalid)
    splits = {s: [x for x in build_samples(corpus, s, args.tasks) if x.task != "recommend" or x.candidates]
              for s in ("train", "valid", "test")}
    train_pool, held_out = split_by_fold(splits["train"], cross_fit)
    # counted over the dialogues it trains on (a held-out cross-fitting fold stays out)
    popularity = popularity_counts(train_pool, corpus.behaviours) if args.candidate_order == "popularity" else {}
    if cross_fit:
        log.info("cross-fitting fold %d of %d: training on %d train samples, predicting the %d held out",
                 cross_fit[0], cross_fit[1], len(train_pool), len(held_out))
    crs_all = load_crs_predictions(args.crs_predictions) if args.crs_predictions else None
    if crs_all is not None:  # a CRS that predicted part of the train split (max_predict_samples): learn from that part
        hinted = [x for x in train_pool if x.key in crs_all]
        if len(hinted) < len(train_pool):
            log.info("training on the %d of %d train samples that have CRS predictions", len(hinted), len(train_pool))
        if not hinted:
            raise PresalesError(f"{args.crs_predictions}: none of its keys match a train sample of {args.data}")
        train_pool = hinted
    train_samples = limit(train_pool, args.max_train_samples, args.seed)
    if args.max_train_recommend > 0:
        train_samples = limit_task(train_samples, "recommend", args.max_train_recommend, args.seed)
    if not train_samples:
        raise PresalesError(f"{args.data}: no training samples for tasks {args.tasks}")
    faithful = None
    if args.faithful_replies:
        train_samples, faithful = faithful_targets(train_samples, corpus.items)
        log.info("train split: %s", describe_cuts(faithful))
    crs_stats: dict = {}
    crs = {s: attach_crs(splits[s] if s != "train" else train_samples + held_out, crs_all, s, crs_stats)
           for s in splits}

    dtype = torch.bfloat16 if use_bf16 and device.type == "cuda" else None
    model, tokenizer = load_base(base_dir, trust_remote_code=args.trust_remote_code, dtype=dtype)
    settings = args.prompt_settings()
    settings.candidate_popularity = popularity
    max_pos = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "seq_length", None)
    if max_pos and settings.max_length > max_pos:
        log.warning("--max-length %d is over the model's %d positions: using %d", settings.max_length, max_pos,
                    max_pos)
        settings.max_length = int(max_pos)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    train_ex, cut = build_examples(train_samples, corpus.items, tokenizer, settings, crs["train"])
    train_ex = [e for e in train_ex for _ in range(repeats[e["task"]] * (args.repeat_ask_replies if e["asks"] else 1))]
    valid_samples = limit(splits["valid"], args.max_valid_samples, args.seed)
    valid_ex, vcut = build_examples(valid_samples, corpus.items, tokenizer, settings, crs["valid"])
    lengths = [len(e["input_ids"]) for e in train_ex]
    counts = {t: sum(e["task"] == t for e in train_ex) for t in args.tasks}
    if "respond" in counts:
        counts["respond_asks"] = sum(e["asks"] for e in train_ex)
    log.info("train: %d examples %s, mean %.0f / max %d tokens, %d cut to fit %d; valid: %d examples (%d cut)",
             len(train_ex), counts, sum(lengths) / len(lengths), max(lengths), cut, settings.max_length,
             len(valid_ex), vcut)
    run.write_json("data_stats.json", {"train": counts, "train_cut": cut, "valid": len(valid_ex), "valid_cut": vcut,
                                       "mean_tokens": sum(lengths) / len(lengths), "max_tokens": max(lengths),
                                       "crs_predictions": crs_stats, "faithful_replies": faithful,
                                       "cross_fit": {"fold": cross_fit[0], "folds": cross_fit[1],
                                                     "train_dialogues": sorted({x.sid for x in train_samples}),
                                                     "held_out": len(held_out)} if cross_fit else None})

    targets = args.lora_targets[0] if args.lora_targets == ["all-linear"] else list(args.lora_targets)
    full = args.lora_r == 0  # full fine-tuning: the checkpoints are whole models, not adapters
    state = None
    if args.resume:
        state = load_trainer_state(run.checkpoint)
        if full:
            model, _ = load_base(run.checkpoint, trust_remote_code=args.trust_remote_code, dtype=dtype)
        else:
            model = PeftModel.from_pretrained(model, str(run.checkpoint), is_trainable=True)
        log.info("resuming from %s (epoch %d, batch %d)", run.checkpoint, state["epoch"], state["batch"])
    elif not full:
        lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                          target_modules=targets, task_type="CAUSAL_LM", bias="none")
        model = get_peft_model(model, lora)
    run.save_config(args)
    model.to(device)
    dist.broadcast_parameters(model)
    model.train()
    log.info("%s: %.3fM trainable of %.2fM parameters; device %s%s", "full fine-tuning" if full else "LoRA",
             count_parameters(model, True) / 1e6, count_parameters(model) / 1e6, device, " (bf16)" if use_bf16 else "")

    keep_logits = plain_lm_head(model)  # the LM head only where an answer token is predicted
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(math.ceil(len(train_ex) / args.batch_size) / args.grad_accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_schedule(args.warmup_steps, max(1, steps_per_epoch * args.epochs), args.min_lr_ratio))
    best = (state or {}).get("best", float("inf"))
    loop = TrainLoop(optimizer, scheduler, params, max_grad_norm=args.max_grad_norm, grad_accum=args.grad_accum,
                     max_minutes=args.max_minutes, max_steps=args.max_steps, log_steps=args.log_steps,
                     save_steps=args.save_steps, run=run, progress=args.progress, name="llm", logger=log, state=state)

    adapter_info = dict(kind="model" if full else "adapter", base_model=str(base_dir.resolve()),
                        trust_remote_code=args.trust_remote_code,
                        prompt=settings.to_dict(), crs_assisted=crs_all is not None, tasks=list(args.tasks))

    def save_adapter(target: Path, resume_at: tuple[int, int] | None = None) -> None:
        if not dist.is_main:
            return
        tmp = staging_dir(target)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_llm_config(tmp, **adapter_info)
        if resume_at is not None:
            save_trainer_state(tmp, best=best, **loop.checkpoint_state(*resume_at))
        replace_dir(tmp, target)

    def batch_loss(batch: list[int]) -> tuple[torch.Tensor, int]:
        t = collate_batch(train_ex, batch, pad_id, device)
        with autocast(device, use_bf16):
            loss, n = answer_loss(model, t, keep_logits)
        return loss, int(t["attention_mask"].sum()), n  # the loss is the mean over the n answer tokens

    val_gen = spread(splits["valid"], args.val_generate)

    def end_epoch(ep: Epoch) -> None:
        nonlocal best
        if not dist.is_main:  # rank 0 validates, logs and saves; the others wait in the next step
            return
        dt = ep.seconds()
        valid_loss = examples_loss(model, valid_ex, args.eval_batch_size, pad_id, device, use_bf16, keep_logits)
        row = dict(epoch=ep.index + 1, step=loop.global_step, train_loss=ep.train_loss, valid_loss=valid_loss,
                   samples_per_s=len(ep.losses) * args.batch_size / max(dt, 1e-9),
                   tokens_per_s=ep.tokens / max(dt, 1e-9), partial=ep.stopped)
        if val_gen:
            t_gen = time.time()
            metrics, _ = evaluate_llm(LLM(model, tokenizer, settings, device), val_gen, corpus.items, crs["valid"],
                                      batch_size=args.eval_batch_size)
            model.train()
            row.update(flat_metrics(metrics, prefix="valid/"))
            row["valid_generate_s"] = time.time() - t_gen
        run.log(**row)
        log.info("epoch %d: train loss %.4f, valid loss %.4f, %.1f samples/s %s", ep.index + 1, ep.train_loss,
                 valid_loss, row["samples_per_s"], {k: v for k, v in row.items() if k.startswith("valid/")})
        if valid_loss < best or not run.best.exists():
            best = min(best, valid_loss)
            save_adapter(run.best)
        save_adapter(run.checkpoint, ep.resume_at)

    if state is None and dist.is_main:
        run.log(epoch=0, step=0, valid_loss=examples_loss(model, valid_ex, args.eval_batch_size, pad_id, device,
                                                          use_bf16, keep_logits), event="start")
    loop.fit(args.epochs, lambda epoch: length_batches(lengths, args.batch_size, args.seed + epoch), batch_loss,
             end_epoch, on_save=lambda epoch, batch: save_adapter(run.checkpoint, (epoch, batch)))
    train_minutes = loop.elapsed() / 60
    if not dist.is_main:  # rank 0 evaluates and predicts with the best adapter
        dist.close()
        return 0
    dist.close()
    run.plot_curves(["train_loss", "valid_loss", "valid/understand/f1", "valid/elicit/f1",
                     "valid/recommend/accuracy", "valid/respond/bleu-1"])

    # final adapter (or model, fully fine-tuned) = the best one; then evaluation and predictions with it
    final = run.path / ("model" if full else "adapter")
    tmp = staging_dir(final)
    for f in run.best.iterdir():
        if f.is_file():
            (tmp / f.name).write_bytes(f.read_bytes())
    replace_dir(tmp, final)
    del model, optimizer
    llm = LLM.load(final, device=str(device), trust_remote_code=args.trust_remote_code, merge_adapters=True)
    prior_fit = None
    if "recommend" in args.tasks:
        prior_fit = fit_recommend_prior(llm, train_pool, splits["valid"], corpus.items, crs_all, crs["valid"],
                                        args.eval_batch_size)
        adapter_info["prompt"] = llm.settings.to_dict()
        save_llm_config(final, **adapter_info)
    if args.merge and not full:  # a fully fine-tuned model is already whole
        tmp = staging_dir(run.path / "merged")
        llm.model.save_pretrained(tmp)
        llm.tokenizer.save_pretrained(tmp)
        save_llm_config(tmp, **{**adapter_info, "kind": "merged", "base_model": None})
        replace_dir(tmp, run.path / "merged")
        log.info("saved the merged model to %s", run.path / "merged")

    t_eval = time.time()
    results = {}
    per_task = args.max_predict_per_task or None
    test_samples = limit(first_per_task(splits["test"], per_task), args.max_test_samples, args.seed)
    predict = {"test": test_samples}
    if "valid" in args.predict_splits:
        predict["valid"] = first_per_task(splits["valid"], per_task)
    if args.predict_train:
        predict["train"] = splits["train"] if args.predict_train < 0 else splits["train"][: args.predict_train]
    if cross_fit:
        predict["train"] = held_out
    for split, samples in predict.items():
        metrics, rows = evaluate_llm(llm, samples, corpus.items, crs[split], batch_size=args.eval_batch_size,
                                     progress=args.progress, cue_samples=[s for s in splits["train"] if s.task == "respond"])
        n = write_predictions(run.path / f"predictions_{split}.jsonl", rows)
        log.info("wrote %d %s predictions", n, split)
        results[split] = metrics
    if prior_fit is not None:
        prior_fit["test_accuracy"] = recommend_accuracy_by_weight(llm, predict["test"], corpus.items, crs["test"],
                                                                  args.eval_batch_size)
        log.info("recommend: test accuracy by prior weight (reported, not used to choose): %s",
                 prior_fit["test_accuracy"])
    test = {"metrics": results["test"], "n_samples": len(predict["test"]), "crs_assisted": crs_all is not None,
            "recommend_prior": prior_fit,
            "note": "recommend: accuracy on the <=20 lettered candidates (an LLM names one item; hit@5/mrr@5 "
                    "undefined); respond: char bleu-1/2, distinct-1/2; groups: 'all' and each domain"}
    run.write_json("test_metrics.json", test)
    summary = {"first_step_loss": loop.first_loss, "epochs": [r for r in run.read_log() if "epoch" in r],
               "stopped_early": loop.stopped, "train_minutes": train_minutes,
               "eval_minutes": (time.time() - t_eval) / 60, "total_minutes": (time.time() - t_start) / 60,
               "test": flat_metrics(results["test"])}
    run.write_json("summary.json", summary)
    log.info("test: %s", summary["test"])
    log.info("done in %.1f min (training %.1f, evaluation %.1f)", summary["total_minutes"], train_minutes,
             summary["eval_minutes"])
    run.commit()
    return 0


# ------------------------------------------------------------------------------------ recommendation prior
def gold_letters(llm, samples, crs_predictions) -> list[int | None]:
    """The gold candidate's letter index in each recommendation sample's prompt (None: not among them)."""
    out = []
    for s in samples:
        order = llm.lettered(s, crs_predictions)
        out.append(order.index(s.target) if s.target in order else None)
    return out


def letter_rows(llm, samples, items, crs_predictions, batch_size: int) -> list[tuple[list[float], int | None]]:
    samples = [s for s in samples if s.task == "recommend" and s.candidates]
    return list(zip(llm.letter_scores(samples, items, crs_predictions, batch_size),
                    gold_letters(llm, samples, crs_predictions)))


def fit_recommend_prior(llm, train_samples, valid_samples, items, crs_train, crs_valid, batch_size: int) -> dict:
    """Set the LLM's letter-position prior (from the train samples' answers, lettered as its prompts letter
    them) and its weight (llm.letters.fit_prior_weight on the valid split); returns what was fitted."""
    from llm.letters import fit_prior_weight, position_prior
    from uneed.tasks.llm_format import MAX_CANDIDATES

    train_recs = [s for s in train_samples if s.task == "recommend" and s.candidates]
    prior = position_prior(gold_letters(llm, train_recs, crs_train), MAX_CANDIDATES)
    llm.settings.recommend_prior, llm.settings.recommend_prior_weight = prior, 0.0
    rows = letter_rows(llm, valid_samples, items, crs_valid, batch_size)
    if not rows:
        log.warning("recommend: no valid recommendation samples to fit the letter prior's weight on: weight 0")
        return {"weight": 0.0, "valid_accuracy": {}, "valid_n": 0, "train_n": len(train_recs), "prior": prior}
    weight, by_weight = fit_prior_weight(rows, prior)
    llm.settings.recommend_prior_weight = weight
    log.info("recommend: letter prior from %d train answers (A %.2f, B %.2f, C %.2f); weight %.2f fitted on %d "
             "valid samples, valid accuracy by weight %s", len(train_recs), *(math.exp(p) for p in prior[:3]), weight,
             len(rows), {w: round(a, 3) for w, a in by_weight.items()})
    return {"weight": weight, "valid_accuracy": by_weight, "valid_n": len(rows), "train_n": len(train_recs),
            "prior": prior}


def recommend_accuracy_by_weight(llm, samples, items, crs_predictions, batch_size: int) -> dict[float, float]:
    from llm.letters import PRIOR_WEIGHTS, accuracy

    rows = letter_rows(llm, samples, items, crs_predictions, batch_size)
    return {w: round(accuracy(rows, llm.settings.recommend_prior, w), 4) for w in PRIOR_WEIGHTS}


def answer_loss(model, batch: dict, keep_logits: bool = True) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the answer tokens (labels != -100) and their count.

    With keep_logits the LM head runs only at the positions that predict an answer token, not over
    the whole prompt - the same loss, a fraction of the head's cost. The body's hidden states are
    taken and the head applied here, because transformers' own `logits_to_keep` takes a 2-D mask
    only in its newest releases."""
    from llm.prompts import IGNORE_INDEX

    labels = batch["labels"]
    target = labels[:, 1:]
    wanted = target != IGNORE_INDEX
    n = int(wanted.sum())
    if not keep_logits:
        return model(**batch).loss, n
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    logits = base.get_output_embeddings()(hidden[:, :-1][wanted])
    loss = torch.nn.functional.cross_entropy(logits.float(), target[wanted])
    return loss, n


def collate_batch(examples, batch: Sequence[int], pad_id: int, device) -> dict:
    from llm.prompts import collate

    return {k: v.to(device) for k, v in collate([examples[i] for i in batch], pad_id, pad_multiple(device)).items()}


if __name__ == "__main__":
    sys.exit(main())
