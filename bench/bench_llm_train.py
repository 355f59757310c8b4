"""LoRA instruction-tuning throughput (samples/s, tokens/s) of the default embedded LLM on this
machine's CPU (or GPU).

    python bench/bench_llm_train.py [--data data/small] [--base-model runs/llm-base] [--batches 20]

Builds the training examples exactly as `presales train llm` does (appendix-F records of the four
tasks, prompt template, truncation to --max-length) and times optimizer steps on length-grouped
batches after a few warm-up steps. Without --base-model an untrained default-size model is built
(throughput does not depend on the weights). Generates the small embedded corpus under a temporary
directory when --data is missing.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from _common import bench_data, bench_parser, set_threads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--base-model", default=None)
    ap.add_argument("--size", default="default")
    ap.add_argument("--batches", type=int, default=20, help="timed batches")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--item-relations", type=int, default=None)
    ap.add_argument("--lora-dropout", type=float, default=None)
    ap.add_argument("--full-logits", action="store_true", help="LM head over every position (not only where an answer token is predicted)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    import llm  # noqa: F401  (warning filters)
    from peft import LoraConfig, get_peft_model

    from llm.model import build_embedded_model, build_tokenizer, corpus_texts, load_base
    from training.llm import LLMTrainArgs, answer_loss, build_examples, collate_batch
    from training.llm_base import extra_tokenizer_texts
    from training.loop import length_batches
    from training.runtime import autocast, pick_device, set_seed
    from uneed.corpus import load_corpus
    from uneed.tasks import build_samples

    data = bench_data(args.data)
    set_seed(0)
    device = pick_device(args.device)
    t0 = time.perf_counter()
    corpus = load_corpus(data)
    if args.base_model:
        model, tok = load_base(args.base_model)
    else:
        tok = build_tokenizer(corpus_texts(corpus) + extra_tokenizer_texts())
        model = build_embedded_model(tok, args.size)
    targs = LLMTrainArgs(data=str(data), out="", max_length=args.max_length, item_relations=args.item_relations)
    if args.lora_dropout is not None:
        targs.lora_dropout = args.lora_dropout
    settings = targs.prompt_settings()
    samples = [s for s in build_samples(corpus, "train") if s.task != "recommend" or s.candidates]
    examples, cut = build_examples(samples, corpus.items, tok, settings, {})
    t_build = time.perf_counter() - t0
    model = get_peft_model(model, LoraConfig(r=targs.lora_r, lora_alpha=targs.lora_alpha, lora_dropout=targs.lora_dropout,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=targs.lr)
    lengths = [len(e["input_ids"]) for e in examples]
    batches = length_batches(lengths, args.batch_size, seed=0)
    print(f"setup {t_build:.1f}s ({len(examples)} train examples, mean {sum(lengths) / len(lengths):.0f} tokens, "
          f"{cut} cut to {args.max_length}); device {device}, torch threads {torch.get_num_threads()}; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {sum(p.numel() for p in params) / 1e6:.3f}M "
          "trainable (LoRA)")
    n_samples = n_tokens = n_real = 0
    elapsed = 0.0
    for i, batch in enumerate(batches[: args.warmup + args.batches]):
        t = collate_batch(examples, batch, tok.pad_token_id, device)
        start = time.perf_counter()
        with autocast(device):
            loss, _ = answer_loss(model, t, keep_logits=not args.full_logits)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            elapsed += time.perf_counter() - start
            n_samples += len(batch)
            n_tokens += t["input_ids"].numel()
            n_real += int(t["attention_mask"].sum())
    print(f"LoRA training, batch {args.batch_size}, {args.batches} batches: {n_samples / elapsed:.1f} samples/s, "
          f"{n_real / elapsed:.0f} tokens/s ({n_tokens / elapsed:.0f} incl. padding); "
          f"one epoch of {len(examples)} samples ~ {len(examples) / (n_samples / elapsed) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
