"""Training throughput of the project's training code beside a bare torch loop of the same model on the same
device, as a ratio, in one run (issue 13: the goal on one H100/H200 is >= 0.5 in bf16).

    python bench/bench_gpu_throughput.py --profile gpu --data data/full --out runs/bench_gpu.json   # on a GPU
    python bench/bench_gpu_throughput.py --profile tiny --steps 8                                 # anywhere

For each training (the configs of the profile: configs/crs_PROFILE.yaml, llm_base_PROFILE.yaml,
llm_lora_PROFILE.yaml; the default profile's are the files without a suffix):

- **crs**: `training.crs.Trainer` (data, tokenizer, model, features and optimizer exactly as `presales train
  crs` builds them) trains one all-task (stage 2) epoch on a capped train set, twice (the first epoch pays
  for first calls); tokens = the source tokens of every sample plus the target tokens of the generated ones.
  Bare: the same BartForConditionalGeneration config, fresh, AdamW on fixed-shape random batches of the
  epoch's batch size, mean source and target length, as many steps.
- **llm-base**: `presales train llm-base --max-steps N` (its own tokens/s, the first steps included).
  Bare: the same Qwen2 config, fresh, AdamW on random blocks of the same shape, N steps.
- **llm**: `presales train llm --max-steps N` (LoRA; its tokens/s counts the prompt and answer tokens).
  Bare: the same base model under the same LoRA config, full-sequence loss on random batches of the
  same batch size and mean length, N steps.

Warm rates on both sides: the CRS's second epoch; the LLM commands' steps after their first WARMUP (from the
per-step tokens/s that TrainLoop logs with --log-steps 1; their whole-epoch rate, first steps included, is
reported beside it); the bare loops after WARMUP untimed steps. Both sides use the project's precision rule
(bf16 autocast on a GPU that has it). Figures go to --out as JSON and to stdout.
"""
from __future__ import annotations

import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import bench_parser, set_threads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROFILES = {"tiny": "_tiny", "default": "", "gpu": "_gpu"}
SCALES = {"tiny": "tiny", "default": "small", "gpu": "full"}
WARMUP = 2  # untimed first steps of every side (first calls: allocations, kernel selection)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(model, make_batch, steps: int, device: torch.device, lr: float = 1e-4, warmup: int = 2) -> float:
    """Seconds for `steps` optimizer steps of the plain loop (forward with labels, backward, clip, AdamW),
    after `warmup` untimed ones."""
    from uneed.device import autocast

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.to(device).train()
    batch = make_batch()
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        with autocast(device):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - t0


def warm_rate(run: Path, warmup: int) -> tuple[float, int]:
    """tokens/s of a training command's steps after its first `warmup` (TrainLoop logs the tokens and the
    rate of every step with --log-steps 1), and how many steps that is."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text("utf-8").splitlines()]
    steps = [r for r in rows if "train_loss_step" in r and r["step"] > warmup and r.get("tokens_per_s", 0) > 0]
    if not steps:
        raise SystemExit(f"{run}: no logged steps after the first {warmup}; raise --steps")
    return sum(r["tokens"] for r in steps) / sum(r["tokens"] / r["tokens_per_s"] for r in steps), len(steps)


def profile_epoch(trainer, epoch: int, path: Path) -> None:
    """One more CRS epoch under torch.profiler: the ops that take the most time, on the host and on the
    device, written to `path` (what the GPU waits on, when the ratio is low)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        trainer.train_epoch(epoch, 2, random.Random(epoch))
        sync(trainer.device)
    table = prof.key_averages()
    parts = [table.table(sort_by="self_cpu_time_total", row_limit=25)]
    if trainer.device.type == "cuda":
        parts.append(table.table(sort_by="self_cuda_time_total", row_limit=25))
    path.write_text("\n\n".join(parts), encoding="utf-8")


def bench_crs(data: Path, config: Path, samples: int, device: str, out: Path, trace: Path | None = None) -> dict:
    from training.crs import CRSTrainArgs, Trainer, count_batches, stage_tasks
    from training.runtime import set_seed
    from uneed.arguments import parse_args

    args = parse_args(CRSTrainArgs, ["--data", str(data), "--out", str(out), "--config", str(config),
                                     "--max-train-samples", str(samples), "--device", device, "--progress", "false"],
                      prog="bench crs")
    trainer = Trainer(args)
    set_seed(args.seed)
    trainer.load_data()
    trainer.build_model()
    trainer.model.to(trainer.device)
    trainer.features()
    tasks = stage_tasks(trainer.model, 2)
    trainer.optimizer(2 * count_batches(trainer.train_feats, args, tasks))
    feats = [f for f in trainer.train_feats if f.task in tasks]
    tokens = sum(len(f.input_ids) + (len(f.labels) if f.task != "recommend" else 0) for f in feats)
    steps = count_batches(trainer.train_feats, args, tasks)
    times = []
    for epoch in range(2):
        sync(trainer.device)
        t0 = time.perf_counter()
        trainer.train_epoch(epoch, 2, random.Random(args.seed * 1000 + epoch))
        sync(trainer.device)
        times.append(time.perf_counter() - t0)
    if trace is not None:
        profile_epoch(trainer, 2, trace)
    trainer.run.release()
    gen = [f for f in feats if f.task != "recommend" and f.labels]
    src = max(2, round(sum(len(f.input_ids) for f in feats) / len(feats)))
    tgt = max(2, round(sum(len(f.labels) for f in gen) / max(1, len(gen))))
    config_hf = trainer.model.seq2seq.config
    del trainer
    from transformers import BartForConditionalGeneration

    torch.manual_seed(0)
    bare_model = BartForConditionalGeneration(config_hf)
    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    b = args.batch_size
    vocab = config_hf.vocab_size

    def make_batch():
        return {"input_ids": torch.randint(5, vocab, (b, src), device=dev),
                "attention_mask": torch.ones(b, src, dtype=torch.long, device=dev),
                "labels": torch.randint(5, vocab, (b, tgt), device=dev)}

    bare_s = bare_loop(bare_model, make_batch, steps, dev, warmup=WARMUP)
    project = tokens / times[1]
    bare = b * (src + tgt) * steps / bare_s
    return {"samples": len(feats), "batches": steps, "tokens": tokens, "epoch_seconds": [round(t, 3) for t in times],
            "tokens_per_s_first_epoch": tokens / times[0], "tokens_per_s": project,
            "bare_shape": [b, src, tgt], "bare_tokens_per_s": bare, "ratio": project / bare,
            "parameters": sum(p.numel() for p in bare_model.parameters())}


def epoch_row(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text("utf-8").splitlines()]
    return next(r for r in rows if r.get("epoch") == 1 and "tokens_per_s" in r)


def bench_llm_base(data: Path, config: Path, steps: int, device: str, out: Path) -> tuple[dict, Path]:
    from transformers import AutoConfig, AutoModelForCausalLM

    from training import llm_base
    from uneed.arguments import parse_args

    args = parse_args(llm_base.LLMBaseArgs, ["--data", str(data), "--out", str(out), "--config", str(config)],
                      prog="bench llm-base")
    assert llm_base.main(["--data", str(data), "--out", str(out), "--config", str(config), "--max-steps", str(steps),
                          "--epochs", "1", "--max-valid-blocks", "1", "--save-steps", "0", "--log-steps", "1",
                          "--max-minutes", "0", "--device", device, "--progress", "false"]) == 0
    row = epoch_row(out)
    rate, timed = warm_rate(out, WARMUP)
    cfg = AutoConfig.from_pretrained(out / "model")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    b, n = args.batch_size, args.block_size

    def make_batch():
        x = torch.randint(5, cfg.vocab_size, (b, n), device=dev)
        return {"input_ids": x, "labels": x}

    bare_s = bare_loop(model, make_batch, timed, dev, warmup=WARMUP)
    bare = b * n * timed / bare_s
    return ({"steps": row["step"], "timed_steps": timed, "tokens_per_s": rate,
             "tokens_per_s_with_first_steps": row["tokens_per_s"], "bare_shape": [b, n], "bare_tokens_per_s": bare,
             "ratio": rate / bare, "parameters": sum(p.numel() for p in model.parameters())}, out)


def bench_llm(data: Path, config: Path, base: Path, steps: int, device: str, out: Path) -> dict:
    from peft import LoraConfig, get_peft_model

    from llm.model import load_base
    from training import llm as train_llm
    from uneed.arguments import parse_args

    args = parse_args(train_llm.LLMTrainArgs, ["--data", str(data), "--out", str(out), "--config", str(config)],
                      prog="bench llm")
    train = min(args.max_train_samples or 10 ** 9, steps * args.batch_size * args.grad_accum)
    assert train_llm.main(["--data", str(data), "--out", str(out), "--config", str(config), "--base-model", str(base),
                           "--max-steps", str(steps), "--epochs", "1", "--max-train-samples", str(train),
                           "--val-generate", "0", "--max-valid-samples", "1", "--max-test-samples", "1",
                           "--predict-splits", "test", "--save-steps", "0", "--log-steps", "1", "--max-minutes", "0",
                           "--device", device, "--progress", "false"]) == 0
    row = epoch_row(out)
    rate, timed = warm_rate(out, WARMUP)
    stats = json.loads((out / "data_stats.json").read_text())
    model, tok = load_base(base)
    targets = args.lora_targets[0] if args.lora_targets == ["all-linear"] else list(args.lora_targets)
    model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                                             target_modules=targets, task_type="CAUSAL_LM", bias="none"))
    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    b, n = args.batch_size, max(2, round(stats["mean_tokens"]))
    vocab = len(tok)

    def make_batch():
        x = torch.randint(5, vocab, (b, n), device=dev)
        return {"input_ids": x, "labels": x}

    bare_s = bare_loop(model, make_batch, timed, dev, lr=args.lr, warmup=WARMUP)
    bare = b * n * timed / bare_s
    return {"steps": row["step"], "timed_steps": timed, "tokens_per_s": rate,
            "tokens_per_s_with_first_steps": row["tokens_per_s"], "bare_shape": [b, n], "bare_tokens_per_s": bare,
            "ratio": rate / bare}


def main(argv=None) -> int:
    ap = bench_parser(__doc__, data=True, device=True)
    ap.set_defaults(data="")
    ap.add_argument("--profile", default="tiny", choices=sorted(PROFILES))
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps of llm-base and llm; the CRS epoch has "
                                                           "about this many batches")
    ap.add_argument("--only", nargs="*", default=["crs", "llm-base", "llm"], help="which trainings to measure")
    ap.add_argument("--out", default=None, help="JSON file of the figures")
    ap.add_argument("--trace", default=None, help="text file: the top ops of one more CRS epoch under torch.profiler")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    import llm  # noqa: F401  (warning filters)
    from uneed.logs import setup_logging

    setup_logging()
    suffix = PROFILES[args.profile]
    configs = ROOT / "configs"
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    data = Path(args.data) if args.data else work / "data"
    if not (data / "train_dialogue.json").is_file():
        from uneed.synth import synthesize

        synthesize(data, scale=SCALES[args.profile], seed=0, progress=False)
    results: dict = {"profile": args.profile, "data": str(data), "torch": torch.__version__,
                     "device": torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu"
                     else "cpu", "steps": args.steps}
    import transformers

    results["transformers"] = transformers.__version__
    if "crs" in args.only:
        from training.crs import CRSTrainArgs
        from uneed.arguments import parse_args

        crs_args = parse_args(CRSTrainArgs, ["--data", str(data), "--out", "x", "--config",
                                             str(configs / f"crs{suffix if suffix else '_default'}.yaml")], prog="x")
        per_task = max(1, math.ceil(args.steps * crs_args.batch_size / 4))
        results["crs"] = bench_crs(data, configs / f"crs{suffix if suffix else '_default'}.yaml", per_task,
                                   args.device, work / "crs", Path(args.trace) if args.trace else None)
    base = None
    if "llm-base" in args.only or "llm" in args.only:
        results["llm-base"], base = bench_llm_base(data, configs / f"llm_base{suffix}.yaml", args.steps, args.device,
                                                   work / "llm-base")
    if "llm" in args.only:
        results["llm"] = bench_llm(data, configs / f"llm_lora{suffix}.yaml", base, args.steps, args.device,
                                   work / "llm")
    print(f"\ndevice {results['device']}, torch {results['torch']}, transformers {results['transformers']}, "
          f"profile {args.profile}")
    print(f"{'training':10s} {'project tokens/s':>17s} {'bare tokens/s':>14s} {'ratio':>6s}")
    for name in ("crs", "llm-base", "llm"):
        if name in results:
            r = results[name]
            print(f"{name:10s} {r['tokens_per_s']:17.0f} {r['bare_tokens_per_s']:14.0f} {r['ratio']:6.3f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
