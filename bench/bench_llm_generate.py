"""Generation speed of the default embedded LLM on this machine's CPU (or GPU): tokens/s at batch 1
and batch 8, and time to first token (prefill + one greedy step), through `llm.inference.LLM`
(greedy, KV cache, left padding).

    python bench/bench_llm_generate.py [--data data/small] [--model runs/llm] [--new-tokens 64]

Prompts are real instruction prompts (respond task, the longest-answer task) of the corpus. Without
--model an untrained default-size model is built (speed does not depend on the weights); EOS is
disabled so every sequence generates exactly --new-tokens tokens.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
from _common import bench_data, bench_parser, set_threads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--model", default=None, help="run dir / model dir (default: untrained default-size model)")
    ap.add_argument("--size", default="default")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--task", default="respond")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    from llm.inference import LLM, _device
    from llm.model import build_embedded_model, build_tokenizer, corpus_texts
    from training.llm_base import extra_tokenizer_texts
    from uneed.corpus import load_corpus
    from uneed.tasks import build_samples

    data = bench_data(args.data)
    torch.manual_seed(0)
    corpus = load_corpus(data)
    if args.model:
        llm = LLM.load(args.model, device=args.device)
    else:
        tok = build_tokenizer(corpus_texts(corpus) + extra_tokenizer_texts())
        dev = _device(args.device)
        llm = LLM(build_embedded_model(tok, args.size).to(dev), tok, device=dev)
    samples = [s for s in build_samples(corpus, "test", [args.task])][:64]
    prompts = [llm.prompt_for(s, corpus.items) for s in samples]
    lens = [len(llm.tokenizer(p)["input_ids"]) for p in prompts]
    eos = llm.tokenizer.eos_token_id
    llm.tokenizer.eos_token_id = None  # fixed-length generation  # type: ignore[assignment]
    try:
        llm.model.generation_config.eos_token_id = None
    except AttributeError:
        pass
    n_params = sum(p.numel() for p in llm.model.parameters())
    print(f"model {n_params / 1e6:.2f}M parameters on {llm.device}, torch threads {torch.get_num_threads()}; "
          f"{args.task} prompts: mean {statistics.mean(lens):.0f} tokens (max {max(lens)})")
    llm.generate(prompts[:2], max_new_tokens=4, batch_size=2)  # warm-up

    def timed(batch, new_tokens):
        best = float("inf")
        for r in range(args.repeats):
            start = time.perf_counter()
            llm.generate(prompts[r * batch:(r + 1) * batch], max_new_tokens=new_tokens, batch_size=batch)
            if llm.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best

    ttft = timed(1, 1)
    print(f"time to first token (batch 1, prefill + 1 step): {ttft * 1000:.0f} ms")
    for batch in (1, 8):
        dt = timed(batch, args.new_tokens)
        print(f"batch {batch}: {batch * args.new_tokens / dt:.0f} generated tokens/s "
              f"({dt * 1000 / args.new_tokens:.1f} ms per step, {args.new_tokens} new tokens)")
    llm.tokenizer.eos_token_id = eos  # type: ignore[assignment]
    return 0


if __name__ == "__main__":
    sys.exit(main())
