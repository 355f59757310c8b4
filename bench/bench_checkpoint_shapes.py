"""Real checkpoint shapes through --base-model: writes a BART-base-Chinese-shaped checkpoint (BartForConditionalGeneration,
a BERT vocab.txt and no tokenizer file of its own, as fnlp/bart-base-chinese) and a Qwen2-shaped causal LM with the
real Qwen tokenizer.json (tests/fixtures/qwen_tokenizer), random weights, then trains each through the project's
commands for a few steps and times it.

    python bench/bench_checkpoint_shapes.py --size base --data data/full --out runs/shapes   # on a GPU: real sizes
    python bench/bench_checkpoint_shapes.py --size tiny --data data/tiny --out /tmp/shapes   # anywhere

Sizes: `base` is the real pair (BART-base-Chinese: d_model 768, 6+6 layers, vocabulary 51,271, 1,024 positions;
Qwen2.5-0.5B: hidden 896, 24 layers, 14 heads, 2 key-value heads, intermediate 4,864, vocabulary 151,936);
`tiny` the same architectures and tokenizers at test size (tests/test_checkpoints.py builds its fixtures here).
"""
from __future__ import annotations

import json
import lzma
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
QWEN_TOKENIZER = ROOT / "tests" / "fixtures" / "qwen_tokenizer"
QWEN_VOCAB = 151936  # the embedding rows of the Qwen2 / Qwen2.5 checkpoints (the tokenizer has 151,669 tokens)
BART_VOCAB = 51271  # fnlp/bart-base-chinese (2022 release)

BART_SIZES = {"tiny": dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64),
              "base": dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                           decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072)}
QWEN_SIZES = {"tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2),
              "base": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                           num_key_value_heads=2)}


def bert_chinese_vocab(size: int | None = None) -> list[str]:
    """A vocab.txt laid out as the Chinese BERT / BART / CPT ones: [PAD], [unused1-99], [UNK] 100, [CLS] 101,
    [SEP] 102, [MASK] 103, then characters, lowercase ASCII and '##' continuation pieces; padded with
    [unusedN] entries to `size`."""
    from uneed.vocab import base_chars

    vocab = ["[PAD]", *(f"[unused{i}]" for i in range(1, 100)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    seen = set(vocab)
    pieces = [c.lower() for c in base_chars() if c.strip()] + [f"##{c}" for c in "0123456789abcdefghijklmnopqrstuvwxyz"]
    for tok in pieces:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    while size is not None and len(vocab) < size:
        vocab.append(f"[unused{len(vocab)}]")
    return vocab


def write_bart_chinese(path: Path, size: str = "tiny") -> Path:
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    path.mkdir(parents=True, exist_ok=True)
    vocab = bert_chinese_vocab(BART_VOCAB if size == "base" else None)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=len(vocab), max_position_embeddings=1024, pad_token_id=0, bos_token_id=101,
                     eos_token_id=102, decoder_start_token_id=102, forced_eos_token_id=102, **BART_SIZES[size])
    BartForConditionalGeneration(cfg).save_pretrained(str(path))
    return path


def write_qwen2(path: Path, size: str = "tiny") -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    (path / "tokenizer.json").write_bytes(lzma.decompress((QWEN_TOKENIZER / "tokenizer.json.xz").read_bytes()))
    shutil.copy(QWEN_TOKENIZER / "tokenizer_config.json", path / "tokenizer_config.json")
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=QWEN_VOCAB, max_position_embeddings=32768, tie_word_embeddings=True,
                      bos_token_id=151643, eos_token_id=151645, rope_theta=1e6, **QWEN_SIZES[size])
    Qwen2ForCausalLM(cfg).save_pretrained(str(path))
    return path


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="tiny", choices=sorted(BART_SIZES))
    ap.add_argument("--data", required=True, help="U-NEED-format corpus")
    ap.add_argument("--out", required=True, help="directory of the checkpoints and runs")
    ap.add_argument("--steps", type=int, default=20, help="LLM optimizer steps; the CRS trains one epoch per stage "
                                                          "on about as many batches")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    from training import llm as train_llm
    from training import llm_base
    from training.crs import main as train_crs
    from uneed.logs import setup_logging

    setup_logging()
    out = Path(args.out)
    figures: dict = {"size": args.size}
    t0 = time.time()
    bart = write_bart_chinese(out / "bart-base-chinese", args.size)
    qwen = write_qwen2(out / "qwen2", args.size)
    figures["write_seconds"] = time.time() - t0
    common = ["--data", args.data, "--device", args.device, "--progress", "false"]
    steps = [
        ("crs", lambda: train_crs([*common, "--out", str(out / "crs"), "--base-model", str(bart), "--config",
                                   str(ROOT / "configs" / "crs_gpu.yaml"), "--rec-epochs", "1", "--epochs", "1",
                                   "--max-train-samples", str(8 * args.steps), "--valid-samples", "32",
                                   "--max-predict-samples", "64", "--predict-splits", "test", "--overwrite"])),
        ("llm-base", lambda: llm_base.main([*common, "--out", str(out / "llm-base"), "--base-model", str(qwen),
                                            "--max-steps", str(args.steps), "--epochs", "1", "--batch-size", "8",
                                            "--block-size", "512", "--max-valid-blocks", "8", "--save-steps", "0",
                                            "--lr", "1e-4", "--overwrite"])),
        ("llm", lambda: train_llm.main([*common, "--out", str(out / "llm"), "--base-model", str(out / "llm-base"),
                                        "--max-steps", str(args.steps), "--batch-size", "8",
                                        "--max-train-samples", str(8 * args.steps), "--max-valid-samples", "16",
                                        "--val-generate", "8", "--max-test-samples", "64", "--predict-splits", "test",
                                        "--save-steps", "0", "--overwrite"])),
    ]
    for name, run in steps:
        t0 = time.time()
        rc = run()
        figures[name] = {"rc": rc, "seconds": round(time.time() - t0, 1)}
        for file, key in (("test_metrics.json", "test_headline"), ("summary.json", "test")):
            if (out / name / file).is_file():
                found = json.loads((out / name / file).read_text("utf-8")).get(key)
                if found:
                    figures[name]["test"] = found
    (out / "shapes.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    return 0 if all(figures[n]["rc"] == 0 for n, _ in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
