"""Pre-train the embedded base LLM on the corpus text (`presales train llm-base`).

    presales train llm-base --data data/small --out runs/llm-base [--config configs/llm_base.yaml]

The model is a small decoder-only Qwen2 (or LLaMA, --arch llama) causal LM, sized by --size
(llm.model.EMBEDDED_SIZES), with the offline char tokenizer (uneed.vocab) built over GB2312 level-1
hanzi + the corpus characters + the instruction templates. It learns from the train-split dialogues
written as text ('用户：…\\n客服：…') and every item's knowledge written as text ('商品知识：价格区间是中，…'),
packed into blocks of --block-size tokens; the valid-split dialogues give the validation loss.

--base-model PATH continues pre-training a local HF causal LM instead (e.g. a real Qwen2.5 or
Chinese-LLaMA directory; --epochs 0 only re-saves it). No weights are ever downloaded.

Run directory: config.yaml, log.jsonl (per-epoch train/valid loss), curves.png, checkpoint/ (for
--resume), model/ (the final model + tokenizer, save_pretrained; pass RUN or RUN/model as
--base-model to `presales train llm`).
"""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from training import distributed
from training.loop import Epoch, TrainLoop, cosine_schedule, load_trainer_state, save_trainer_state
from training.runtime import RunDir, autocast, pick_device, replace_dir, set_seed, staging_dir
from uneed.arguments import parse_args
from uneed.logs import setup_logging

log = logging.getLogger("training.llm_base")



@dataclass
class LLMBaseArgs:
    """Pre-train the embedded base LLM on corpus text."""

    data: str = field(metadata={"help": "U-NEED-format corpus directory"})
    out: str = field(metadata={"help": "run directory"})
    base_model: str | None = field(default=None, metadata={"help": "local HF causal-LM dir to continue instead of "
                                                                     "building the embedded model"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow model code from --base-model (ChatGLM)"})
    size: str = field(default="default", metadata={"help": "embedded model size: tiny, default, medium, large"})
    arch: str = field(default="qwen2", metadata={"help": "embedded architecture: qwen2 or llama"})
    # the size preset's fields, each settable on its own (None: the preset's value)
    hidden_size: int | None = None
    intermediate_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    num_key_value_heads: int | None = None
    max_position_embeddings: int | None = None
    tokenizer_level2: bool = field(default=False, metadata={"help": "add GB2312 level-2 hanzi to the vocabulary"})
    block_size: int = field(default=256, metadata={"help": "tokens per training block"})
    batch_size: int = 16
    epochs: int = 4
    lr: float = 2e-3
    min_lr_ratio: float = field(default=0.1, metadata={"help": "cosine schedule floor, as a share of --lr"})
    warmup_steps: int = 30
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    max_valid_blocks: int = field(default=128, metadata={"help": "validation blocks per evaluation (0: all)"})
    max_minutes: float = field(default=8.0, metadata={"help": "stop training (then save) after this many minutes; "
                                                                "0: no limit"})
    max_steps: int = field(default=0, metadata={"help": "stop after N optimizer steps (0: no limit; for smoke "
                                                         "tests)"})
    save_steps: int = field(default=200, metadata={"help": "checkpoint every N optimizer steps (and each epoch)"})
    log_steps: int = 20
    skip_invalid: bool = field(default=False, metadata={"help": "leave invalid dialogues out instead of failing"})
    seed: int = 42
    device: str = "auto"
    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: on with a CUDA GPU)"})
    num_threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch default)"})
    resume: bool = field(default=False, metadata={"help": "continue from RUN/checkpoint"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run at --out (kept until the new one has finished)"})
    progress: bool = True


# ------------------------------------------------------------------------------------ shared helpers
def extra_tokenizer_texts() -> list[str]:
    """Texts whose characters every prompt uses (instructions, templates, tool-call protocol)."""
    from llm.prompts import TEMPLATES
    from uneed.tasks.llm_format import CRS_INPUT, CRS_INSTRUCTION, INSTRUCTIONS

    return list(INSTRUCTIONS.values()) + list(CRS_INPUT.values()) + [CRS_INSTRUCTION, *TEMPLATES.values(),
                                                                      "…【】「」《》"]


# ------------------------------------------------------------------------------------ data
def pack_blocks(texts: Iterable[str], tokenizer, block_size: int) -> torch.Tensor:
    """Texts tokenized, joined with EOS and cut into (n, block_size) blocks (the tail is dropped)."""
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
        if eos is not None:
            ids.append(eos)
    n = len(ids) // block_size
    if n == 0 and ids:
        ids += [tokenizer.pad_token_id or 0] * (block_size - len(ids))
        n = 1
    return torch.tensor(ids[: n * block_size], dtype=torch.long).view(n, block_size)


@torch.no_grad()
def block_loss(model, blocks: torch.Tensor, batch_size: int, device, use_bf16) -> float:
    if len(blocks) == 0:
        return float("nan")
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        x = blocks[i:i + batch_size].to(device)
        with autocast(device, use_bf16):
            loss = model(input_ids=x, labels=x).loss
        total += float(loss) * len(x)
        count += len(x)
    model.train()
    return total / count


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(LLMBaseArgs, argv, prog="presales train llm-base")
    setup_logging()
    from llm.model import (build_embedded_model, build_tokenizer, corpus_texts, count_parameters, load_base,
                           resolve_base_dir, save_llm_config)
    from uneed.corpus import load_corpus

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    set_seed(args.seed)
    dist = distributed.setup(args.device)  # one process, or data-parallel under torchrun
    device = pick_device(args.device)
    run = RunDir.staged(args.out, overwrite=args.overwrite, resume=args.resume)
    corpus = load_corpus(args.data, skip_invalid=args.skip_invalid)
    train_texts = corpus_texts(corpus, ("train",), items=True)
    valid_texts = corpus_texts(corpus, ("valid",), items=False)

    state = None
    if args.resume:
        state = load_trainer_state(run.checkpoint)
        model, tokenizer = load_base(run.checkpoint, trust_remote_code=args.trust_remote_code)
        log.info("resuming from %s (epoch %d, step %d)", run.checkpoint, state["epoch"], state["global_step"])
    elif args.base_model:
        model, tokenizer = load_base(resolve_base_dir(args.base_model), trust_remote_code=args.trust_remote_code)
    else:
        tokenizer = build_tokenizer(train_texts + extra_tokenizer_texts(), level2=args.tokenizer_level2)
        model = build_embedded_model(tokenizer, args.size, args.arch, **{
            name: getattr(args, name) for name in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                   "num_attention_heads", "num_key_value_heads",
                                                   "max_position_embeddings")})
    run.save_config(args)
    model.to(device)
    dist.broadcast_parameters(model)
    model.train()
    log.info("model: %.2fM parameters, vocabulary %d, device %s", count_parameters(model) / 1e6, len(tokenizer),
             device)

    train_blocks = pack_blocks(train_texts, tokenizer, args.block_size)
    valid_blocks = pack_blocks(valid_texts, tokenizer, args.block_size)
    if args.max_valid_blocks and len(valid_blocks) > args.max_valid_blocks:
        valid_blocks = valid_blocks[: args.max_valid_blocks]
    log.info("train: %d blocks of %d tokens (%d texts); valid: %d blocks", len(train_blocks), args.block_size,
             len(train_texts), len(valid_blocks))

    steps_per_epoch = math.ceil(len(train_blocks) / args.batch_size)
    total_steps = max(1, steps_per_epoch * args.epochs)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(args.warmup_steps, total_steps,
                                                                             args.min_lr_ratio))
    loop = TrainLoop(optimizer, scheduler, model.parameters(), max_grad_norm=args.max_grad_norm,
                     max_minutes=args.max_minutes, max_steps=args.max_steps, log_steps=args.log_steps,
                     save_steps=args.save_steps, run=run, progress=args.progress, name="llm-base", logger=log,
                     state=state)

    def checkpoint(epoch: int, batch: int) -> None:
        if not dist.is_main:
            return
        tmp = staging_dir(run.checkpoint)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        save_trainer_state(tmp, **loop.checkpoint_state(epoch, batch))
        replace_dir(tmp, run.checkpoint)

    def batches(epoch: int) -> list[list[int]]:
        order = torch.randperm(len(train_blocks), generator=torch.Generator().manual_seed(args.seed + epoch)).tolist()
        return [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]

    def batch_loss(batch: list[int]) -> tuple[torch.Tensor, int]:
        x = train_blocks[batch].to(device)
        with autocast(device, args.bf16):
            return model(input_ids=x, labels=x).loss, x.numel()

    def end_epoch(ep: Epoch) -> None:
        if not dist.is_main:  # rank 0 validates, logs and saves; the others wait in the next step
            return
        valid_loss = block_loss(model, valid_blocks, args.batch_size, device, args.bf16)
        dt = ep.seconds()
        run.log(epoch=ep.index + 1, step=loop.global_step, train_loss=ep.train_loss, valid_loss=valid_loss,
                valid_ppl=math.exp(min(valid_loss, 50)), tokens_per_s=ep.tokens / max(dt, 1e-9), partial=ep.stopped)
        log.info("epoch %d: train loss %.4f, valid loss %.4f (ppl %.1f), %.0f tokens/s", ep.index + 1, ep.train_loss,
                 valid_loss, math.exp(min(valid_loss, 50)), ep.tokens / max(dt, 1e-9))
        checkpoint(*ep.resume_at)

    if state is None and dist.is_main:
        run.log(epoch=0, valid_loss=block_loss(model, valid_blocks, args.batch_size, device, args.bf16),
                step=0, event="start")
    loop.fit(args.epochs, batches, batch_loss, end_epoch, on_save=checkpoint)
    if not dist.is_main:
        dist.close()
        return 0

    final = run.path / "model"
    tmp = staging_dir(final)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    save_llm_config(tmp, kind="base", trust_remote_code=args.trust_remote_code,
                    max_length=int(getattr(model.config, "max_position_embeddings", 2048) or 2048))
    replace_dir(tmp, final)
    run.plot_curves(["train_loss", "valid_loss"])
    rows = [r for r in run.read_log() if "epoch" in r]
    summary = {"first_step_loss": loop.first_loss, "epochs": rows, "stopped_early": loop.stopped,
               "minutes": loop.elapsed() / 60, "model_dir": str((Path(args.out) / "model").resolve())}
    run.write_json("summary.json", summary)
    run.commit()
    dist.close()
    log.info("saved the base model to %s (%.1f min)", summary["model_dir"], summary["minutes"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
