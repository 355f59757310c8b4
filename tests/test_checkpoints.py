"""Real checkpoint shapes through --base-model (issue 13, item 3): a BART-base-Chinese-shaped checkpoint
(BartForConditionalGeneration, a BERT vocab.txt and no tokenizer file of its own, as fnlp/bart-base-chinese)
for the CRS, and a Qwen2-shaped causal LM with the real Qwen tokenizer.json (tests/fixtures/qwen_tokenizer)
for the LLM and the controller. Tiny random weights of the same architectures, saved with save_pretrained."""
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from crs.data import Encoder
from crs.heads import KeySpace, decode_bio, span_pieces
from crs.model import base_tokenizer, build_tokenizer
from uneed.errors import ModelLoadError
from uneed.tasks import SPECIAL_TOKENS, Utterance, build_samples, crs_example
from uneed.tasks.text import parse_tags, split_tag

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_checkpoint_shapes import QWEN_VOCAB, bert_chinese_vocab, write_bart_chinese, write_qwen2  # noqa: E402


@pytest.fixture(scope="module")
def tiny_corpus(tiny_corpus_dir):
    from uneed.corpus import load_corpus

    return load_corpus(tiny_corpus_dir)


@pytest.fixture(scope="module")
def bart_chinese(tmp_path_factory) -> Path:
    path = write_bart_chinese(tmp_path_factory.mktemp("bart-base-chinese"), "tiny")
    assert not (path / "tokenizer_config.json").exists() and not (path / "tokenizer.json").exists()
    return path


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory) -> Path:
    return write_qwen2(tmp_path_factory.mktemp("qwen2"), "tiny")


# ------------------------------------------------------------------------------------ the CRS on BART-Chinese
def test_bert_vocab_is_read_as_a_bert_tokenizer(bart_chinese, tmp_path):
    tok = base_tokenizer(bart_chinese)
    assert type(tok).__name__ == "BertTokenizer" and len(tok) == len(bert_chinese_vocab())
    assert (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id) == (101, 102, 0)
    tok = build_tokenizer([], str(bart_chinese))
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) == 1 for t in SPECIAL_TOKENS)
    # a directory without its vocabulary is refused in one line, not loaded as an empty tokenizer
    bare = tmp_path / "bare"
    shutil.copytree(bart_chinese, bare)
    (bare / "vocab.txt").unlink()
    with pytest.raises(ModelLoadError, match="lacks its vocabulary files"):
        base_tokenizer(bare)
    with pytest.raises(ModelLoadError, match="no such directory"):
        base_tokenizer(tmp_path / "fnlp" / "bart-base-chinese")


def test_extraction_copies_what_the_user_wrote_through_a_bert_tokenizer(bart_chinese, tiny_corpus):
    """Gold BIO labels of every understanding sample, put through the tokens of a lowercasing word-piece
    tokenizer and decoded the way inference decodes, give back the annotated values as written."""
    from crs.catalog import Catalog

    tok = build_tokenizer([], str(bart_chinese))
    examples = [crs_example(s, tiny_corpus.items) for s in build_samples(tiny_corpus, "train", ["understand"])]
    keys = KeySpace.fit(examples)
    enc = Encoder(tok, Catalog.from_corpus(tiny_corpus), 100000, 48, 50, keys=keys, head_tasks=("understand",))
    checked = 0
    for ex in examples:
        f = enc.encode(ex)
        gold = [(k, v) for k, v in map(split_tag, parse_tags(ex.target)[0]) if v and k in keys.index]
        if not gold or any(v not in ex.source[slice(*ex.span)] for _, v in gold):
            continue
        pieces = span_pieces(f.source, [f.offsets[t] for t in f.span_tokens])
        spans = decode_bio([f.tag_labels[t] for t in f.span_tokens], pieces, keys)
        assert sorted(spans) == sorted(gold), (ex.source[slice(*ex.span)], spans, gold)
        checked += 1
    assert checked > 20
    assert span_pieces("要 iPhone 13 的", [(2, 8), (9, 11)]) == ["iPhone", " 13"]
    assert decode_bio([1, 2], ["iPhone", " 13"], KeySpace(["品牌"], {})) == [("品牌", "iPhone 13")]


def test_crs_trains_and_answers_on_a_bart_chinese_checkpoint(bart_chinese, tiny_corpus_dir, tmp_path):
    from crs.inference import CRS
    from training.crs import main as train_crs

    out = tmp_path / "crs"
    assert train_crs(["--data", str(tiny_corpus_dir), "--out", str(out), "--base-model", str(bart_chinese),
                      "--config", str(CONFIGS / "crs_tiny.yaml"), "--rec-epochs", "1", "--epochs", "1",
                      "--max-train-samples", "16", "--valid-samples", "4", "--max-predict-samples", "4",
                      "--predict-splits", "test", "--progress", "false"]) == 0
    rows = [json.loads(line) for line in (out / "predictions_test.jsonl").read_text("utf-8").splitlines()]
    assert {r["task"] for r in rows} == {"understand", "elicit", "recommend", "respond"}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text("utf-8").splitlines()]
    assert [r["stage"] for r in log if "epoch" in r] == [1, 2]
    crs = CRS.load(out)
    assert type(crs.tok).__name__ == "BertTokenizer" and crs.config.base_model == str(bart_chinese)
    assert crs.model.seq2seq.get_input_embeddings().weight.shape[0] == len(crs.tok) > len(bert_chinese_vocab())
    ctx = [Utterance("用户", "想买VIVO手机，3000元以内", "用户需求")]
    reply = crs.respond([ctx], items=[[next(iter(crs.catalog.ids))]])[0]
    # no BERT-style spaces beside Chinese characters (English word pieces, copied from the prompt by this
    # barely trained model, keep theirs)
    assert isinstance(reply, str) and reply and not re.search(r"[^\x00-\x7f]\s|\s[^\x00-\x7f]", reply)
    tags = crs.understand([ctx])[0]
    assert all("：" in t for t in tags)
    assert len(crs.recommend([ctx], k=5)[0]) == 5


# ------------------------------------------------------------------------------------ the LLM on Qwen2
def test_llm_trains_and_answers_on_a_qwen2_checkpoint(qwen2, tiny_corpus_dir, tmp_path):
    from llm.inference import LLM
    from llm.model import load_base
    from training import llm as train_llm
    from training import llm_base
    from training.controller import main as train_controller

    model, tok = load_base(qwen2)
    assert type(tok).__name__ == "Qwen2Tokenizer" and len(tok) == 151669
    assert tok("干性皮肤")["input_ids"] == [99251, 33071, 102010]  # the real Qwen vocabulary, not a char one
    assert model.get_input_embeddings().weight.shape[0] == QWEN_VOCAB

    base = tmp_path / "llm-base"  # continued pre-training of the checkpoint, two steps
    assert llm_base.main(["--data", str(tiny_corpus_dir), "--out", str(base), "--base-model", str(qwen2),
                          "--config", str(CONFIGS / "llm_base_tiny.yaml"), "--max-steps", "2", "--epochs", "1",
                          "--max-valid-blocks", "1"]) == 0
    summary = json.loads((base / "summary.json").read_text())
    assert summary["epochs"][-1]["train_loss"] == pytest.approx(11.93, abs=0.5)  # ln(151936): random weights
    lora = tmp_path / "llm"  # LoRA straight on the checkpoint directory
    assert train_llm.main(["--data", str(tiny_corpus_dir), "--out", str(lora), "--base-model", str(qwen2),
                           "--config", str(CONFIGS / "llm_lora_tiny.yaml"), "--max-steps", "2",
                           "--max-train-samples", "8", "--max-valid-samples", "2", "--val-generate", "0",
                           "--max-test-samples", "4"]) == 0
    rows = [json.loads(line) for line in (lora / "predictions_test.jsonl").read_text("utf-8").splitlines()]
    assert len(rows) == 4 and all("prediction" in r for r in rows)
    llm = LLM.load(lora / "adapter", device="cpu")
    assert type(llm.tokenizer).__name__ == "Qwen2Tokenizer"
    assert isinstance(llm.generate(["用户：有面膜吗\n客服："], max_new_tokens=4)[0], str)
    ctl = tmp_path / "controller"
    assert train_controller(["--data", str(tiny_corpus_dir), "--out", str(ctl), "--base-model", str(lora),
                             "--max-train-samples", "8", "--max-valid-samples", "2", "--max-test-decisions", "2",
                             "--batch-size", "4", "--progress", "false"]) == 0
    assert (ctl / "test_metrics.json").is_file()
