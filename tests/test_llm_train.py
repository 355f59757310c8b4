"""Pre-training, LoRA instruction tuning, save/load through --base-model, resume, inference edges."""
import json
import logging
import math
from pathlib import Path

import pytest
import torch

from llm.inference import LLM, make_sample
from llm.model import build_embedded_model, build_tokenizer, corpus_texts, load_base, plain_lm_head
from llm.prompts import PromptSettings
from training import llm as train_llm
from training import llm_base
from uneed.candidates import popularity_counts
from uneed.corpus import load_corpus
from uneed.errors import PresalesError
from uneed.tasks import Utterance, build_samples, first_per_task, fold_of, read_predictions

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def corpus(tiny_corpus_dir):
    return load_corpus(tiny_corpus_dir)


@pytest.fixture(scope="module")
def base_run(tiny_corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("llm-base")
    assert llm_base.main(["--data", str(tiny_corpus_dir), "--out", str(out),
                          "--config", str(CONFIGS / "llm_base_tiny.yaml")]) == 0
    return out


@pytest.fixture(scope="module")
def lora_run(tiny_corpus_dir, base_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("llm")
    assert train_llm.main(["--data", str(tiny_corpus_dir), "--out", str(out), "--base-model", str(base_run),
                           "--config", str(CONFIGS / "llm_lora_tiny.yaml"), "--merge", "--save-steps", "3",
                           "--max-test-samples", "0"]) == 0  # the whole test split: every task is scored
    return out


@pytest.fixture(scope="module")
def tiny_llm(corpus):
    torch.manual_seed(0)
    tok = build_tokenizer(corpus_texts(corpus))
    return LLM(build_embedded_model(tok, "tiny"), tok, PromptSettings(max_length=256))


def test_base_run_saves_an_hf_model_that_loads_back(base_run, tiny_corpus_dir, tmp_path):
    assert (base_run / "model" / "config.json").is_file() and (base_run / "model" / "tokenizer.json").is_file()
    epochs = [json.loads(line) for line in (base_run / "log.jsonl").read_text().splitlines()]
    assert any(r.get("epoch") == 1 and "train_loss" in r and "valid_loss" in r for r in epochs)
    for path in (base_run, base_run / "model"):  # a run dir or its model/
        model, tok = load_base(path)
        assert len(tok("售前对话")["input_ids"]) == 4
    # --base-model takes a saved directory (here: continue pre-training it for 2 steps)
    again = tmp_path / "again"
    assert llm_base.main(["--data", str(tiny_corpus_dir), "--out", str(again), "--base-model",
                          str(base_run / "model"), "--config", str(CONFIGS / "llm_base_tiny.yaml"),
                          "--max-steps", "2"]) == 0
    assert (again / "model" / "config.json").is_file()


def test_lora_run_outputs(lora_run, corpus):
    assert (lora_run / "adapter" / "adapter_config.json").is_file()
    assert (lora_run / "merged" / "config.json").is_file()
    metrics = json.loads((lora_run / "test_metrics.json").read_text())["metrics"]
    test = [s for s in build_samples(corpus, "test") if s.task != "recommend" or s.candidates]
    # the four tasks, and the reply checks beside BLEU and Distinct
    assert set(metrics) == {"understand", "elicit", "recommend", "respond", "respond_checks"}
    for task, groups in metrics.items():
        assert groups["all"]["n"] == sum(s.task == task.removesuffix("_checks") for s in test) > 0
    # the reported accuracy is the share of recommend samples whose predicted item is the gold one
    preds = read_predictions(lora_run / "predictions_test.jsonl")
    recommend = [s for s in test if s.task == "recommend"]
    assert all(isinstance(preds[s.key], list) and len(preds[s.key]) <= 1 for s in recommend)
    hits = [bool(preds[s.key]) and preds[s.key][0] == s.target for s in recommend]
    assert metrics["recommend"]["all"]["accuracy"] == pytest.approx(sum(hits) / len(hits))
    log_rows = [json.loads(line) for line in (lora_run / "log.jsonl").read_text().splitlines()]
    assert any(r.get("epoch") == 1 and "valid_loss" in r and "train_loss" in r for r in log_rows)
    assert (lora_run / "curves.png").is_file()
    # the adapter dir, the merged dir and the run dir all load; merged and adapter agree
    sample = next(s for s in build_samples(corpus, "test", ["respond"]))
    outs = [LLM.load(p).respond([sample], corpus.items) for p in (lora_run, lora_run / "adapter",
                                                                   lora_run / "merged")]
    assert outs[1] == outs[2]
    # the candidates' popularity (counted over the train split it learned from) travels with the model
    train = [s for s in build_samples(corpus, "train") if s.task != "recommend" or s.candidates]
    loaded = LLM.load(lora_run)
    assert loaded.settings.candidate_popularity == popularity_counts(train, corpus.behaviours) != {}
    # so do the letter prior of its train answers and the weight fitted on valid, reported beside test
    fit = json.loads((lora_run / "test_metrics.json").read_text())["recommend_prior"]
    assert loaded.settings.recommend_prior == pytest.approx(fit["prior"]) and len(fit["prior"]) == 20
    assert loaded.settings.recommend_prior_weight == fit["weight"]
    assert fit["valid_accuracy"][str(fit["weight"])] == max(fit["valid_accuracy"].values())
    assert fit["test_accuracy"][str(fit["weight"])] == pytest.approx(metrics["recommend"]["all"]["accuracy"], abs=1e-4)


def test_resume_continues_the_run(lora_run, base_run, tiny_corpus_dir):
    assert train_llm.main(["--data", str(tiny_corpus_dir), "--out", str(lora_run), "--base-model", str(base_run),
                           "--config", str(CONFIGS / "llm_lora_tiny.yaml"), "--epochs", "2", "--resume",
                           "--val-generate", "0", "--max-test-samples", "4"]) == 0
    epochs = [json.loads(line).get("epoch") for line in (lora_run / "log.jsonl").read_text().splitlines()]
    assert 2 in epochs and epochs.count(1) == 1


def test_full_fine_tuning_saves_a_whole_model_that_answers_and_resumes(base_run, tiny_corpus_dir, corpus, tmp_path):
    """--lora-r 0 trains every weight: the run holds model/ (no adapter), LLM.load answers from it, the
    weights moved away from the base, and --resume continues from the whole-model checkpoint."""
    out = tmp_path / "full"
    common = ["--data", str(tiny_corpus_dir), "--out", str(out), "--base-model", str(base_run), "--config",
              str(CONFIGS / "llm_lora_tiny.yaml"), "--lora-r", "0", "--val-generate", "0", "--max-test-samples", "4",
              "--predict-splits", "test"]
    assert train_llm.main([*common, "--epochs", "1"]) == 0
    assert (out / "model" / "config.json").is_file() and not (out / "adapter").exists()
    assert json.loads((out / "model" / "presales_llm.json").read_text())["kind"] == "model"
    llm = LLM.load(out)
    base, _ = load_base(base_run)
    tuned = dict(llm.model.named_parameters())
    assert all(n in tuned for n, _ in base.named_parameters())
    assert sum(not torch.equal(p, tuned[n]) for n, p in base.named_parameters()) > len(tuned) // 2
    sample = next(s for s in build_samples(corpus, "test", ["respond"]))
    assert isinstance(llm.respond([sample], corpus.items)[0], str)
    assert train_llm.main([*common, "--epochs", "2", "--resume"]) == 0
    epochs = [json.loads(line).get("epoch") for line in (out / "log.jsonl").read_text().splitlines()]
    assert 2 in epochs and epochs.count(1) == 1
    with pytest.raises(PresalesError, match="--lora-r: must not be negative"):
        train_llm.main([*common[:-2], "--lora-r", "-1"])


def test_repeat_gives_a_task_more_passes_and_context_turns_reach_the_saved_model(base_run, tiny_corpus_dir,
                                                                                 tmp_path):
    """And --repeat-ask-replies repeats the questions among the replies; --max-train-recommend keeps fewer
    recommendation samples."""
    common = ["--data", str(tiny_corpus_dir), "--base-model", str(base_run), "--config",
              str(CONFIGS / "llm_lora_tiny.yaml"), "--max-steps", "1", "--val-generate", "0", "--max-test-samples",
              "1", "--predict-splits"]
    counts = {}
    for n in (1, 3):
        out = tmp_path / f"r{n}"
        assert train_llm.main([*common, "--out", str(out), "--repeat-understand", str(n),
                               "--context-turns-understand", "1"]) == 0
        counts[n] = json.loads((out / "data_stats.json").read_text())["train"]
    assert counts[1]["understand"] > 0 and counts[3]["understand"] == 3 * counts[1]["understand"]
    # the replies are trained on without their untrue clauses (uneed.replies.faithful_targets), counted
    faithful = json.loads((tmp_path / "r1" / "data_stats.json").read_text())["faithful_replies"]
    assert faithful["replies"] - faithful["dropped"] == counts[1]["respond"] > 0
    assert faithful["cut"] + faithful["dropped"] <= faithful["replies"]
    assert {t: c for t, c in counts[3].items() if t != "understand"} == \
        {t: c for t, c in counts[1].items() if t != "understand"}
    saved = json.loads(next((tmp_path / "r3").glob("*/presales_llm.json")).read_text())
    assert saved["prompt"]["context_turns"] == {"understand": 1}  # inference builds the same prompts
    with pytest.raises(PresalesError, match="--repeat-elicit 0"):
        train_llm.main([*common, "--out", str(tmp_path / "bad"), "--repeat-elicit", "0"])
    # --repeat-ask-replies: the replies that ask for an attribute, and only they, appear N times
    assert train_llm.main([*common, "--out", str(tmp_path / "asks"), "--repeat-ask-replies", "2"]) == 0
    asks = json.loads((tmp_path / "asks" / "data_stats.json").read_text())["train"]
    assert 0 < counts[1]["respond_asks"] < counts[1]["respond"]
    assert asks == {**counts[1], "respond_asks": 2 * counts[1]["respond_asks"],
                    "respond": counts[1]["respond"] + counts[1]["respond_asks"]}
    with pytest.raises(PresalesError, match="--repeat-ask-replies 0"):
        train_llm.main([*common, "--out", str(tmp_path / "bad"), "--repeat-ask-replies", "0"])
    # --max-train-recommend: fewer recommendation samples, every other sample kept
    assert train_llm.main([*common, "--out", str(tmp_path / "cap"), "--max-train-recommend", "2"]) == 0
    capped = json.loads((tmp_path / "cap" / "data_stats.json").read_text())["train"]
    assert counts[1]["recommend"] > 2 and capped == {**counts[1], "recommend": 2}
    with pytest.raises(PresalesError, match="--max-train-recommend: must not be negative"):
        train_llm.main([*common, "--out", str(tmp_path / "bad"), "--max-train-recommend", "-1"])


def test_short_lora_run_lowers_the_loss(corpus, base_run):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base, tok = load_base(base_run)  # briefly pre-trained: a random model's logits are too flat to move
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) < 0.2 * sum(
        p.numel() for p in model.parameters())
    samples = build_samples(corpus, "train", ["understand", "elicit"])[:8]
    examples, _ = train_llm.build_examples(samples, corpus.items, tok, PromptSettings(max_length=256), {})
    batch = train_llm.collate_batch(examples, range(len(examples)), tok.pad_token_id, torch.device("cpu"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    losses = []
    for _ in range(60):  # 8 samples memorised (at 2e-2 the loss stalled near 0.8x on the current tiny corpus)
        loss, _ = train_llm.answer_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_answer_loss_on_answer_positions_only_equals_the_full_loss(corpus, base_run):
    """The LM head run only where an answer token is predicted gives the loss of the full forward pass."""
    base, tok = load_base(base_run)
    assert plain_lm_head(base)
    samples = build_samples(corpus, "train", ["understand", "respond"])[:6]
    examples, _ = train_llm.build_examples(samples, corpus.items, tok, PromptSettings(max_length=256), {})
    batch = train_llm.collate_batch(examples, range(len(examples)), tok.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        cheap, n = train_llm.answer_loss(base, batch, keep_logits=True)
        full, m = train_llm.answer_loss(base, batch, keep_logits=False)
    assert n == m > 0 and float(cheap) == pytest.approx(float(full), rel=1e-5)


def test_load_errors(tmp_path, base_run):
    with pytest.raises(PresalesError, match="no such"):
        LLM.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PresalesError, match="no model here"):
        LLM.load(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(PresalesError, match="cannot load"):
        LLM.load(bad)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(PresalesError, match="no such model directory"):
        LLM.load(adapter)
    with pytest.raises(PresalesError, match="no such directory"):
        train_llm.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--base-model", str(tmp_path / "x")])


def test_generation_edges(tiny_llm, caplog):
    assert tiny_llm.generate([]) == []
    assert tiny_llm.understand([]) == []
    with pytest.raises(PresalesError, match="empty"):
        tiny_llm.generate(["  "])
    with caplog.at_level(logging.WARNING):
        out = tiny_llm.generate(["用户：面霜" * 200], max_new_tokens=4)
    assert len(out) == 1 and "left-truncated" in caplog.text
    # batched (left padding) == one by one, greedy
    prompts = ["### 指令：\n识别\n### 输入：\n用户：要面霜\n### 回答：\n", "用户：你好", "客服：亲，想要什么价位的呢？" * 3]
    together = tiny_llm.generate(prompts, max_new_tokens=6, batch_size=3)
    alone = [tiny_llm.generate([p], max_new_tokens=6)[0] for p in prompts]
    assert together == alone


def test_task_methods_and_empty_inputs(tiny_llm, corpus, caplog):
    with pytest.raises(PresalesError, match="empty"):
        tiny_llm.understand([make_sample("understand", current=Utterance("用户", "", ""))])
    with pytest.raises(PresalesError, match="no candidates"):
        tiny_llm.recommend([make_sample("recommend", context=[Utterance("用户", "要面霜", "")])], corpus.items)
    ctx = [Utterance("用户", "有没有保湿的面霜" * 40, "用户需求")] * 6  # far over 256 tokens
    with caplog.at_level(logging.INFO):
        tags = tiny_llm.understand([make_sample("understand", ctx, Utterance("用户", "要大瓶的", "用户需求"))])
    assert isinstance(tags[0], list) and "over the context length" in caplog.text
    rec = next(s for s in build_samples(corpus, "test", ["recommend"]) if s.candidates)
    choice = tiny_llm.recommend([rec], corpus.items)[0]
    assert choice in rec.candidates
    assert isinstance(tiny_llm.elicit([make_sample("elicit", ctx[:1])])[0], list)
    assert isinstance(tiny_llm.respond([make_sample("respond", ctx[:1], needs=[("品类", "面霜")])])[0], str)
    rows = tiny_llm.predict(build_samples(corpus, "test")[:6], corpus.items)
    assert all({"key", "task", "prediction"} <= set(r) for r in rows)


def test_letter_scores_are_the_answers_first_token_and_batching_keeps_them(tiny_llm, corpus):
    from uneed.tasks import letters

    recs = [s for s in build_samples(corpus, "test", ["recommend"]) if s.candidates][:5]
    together = tiny_llm.letter_scores(recs, corpus.items, batch_size=5)
    alone = [tiny_llm.letter_scores([r], corpus.items)[0] for r in recs]
    for a, b, r in zip(together, alone, recs):
        assert len(a) == len(tiny_llm.lettered(r, None)) and a == pytest.approx(b, abs=1e-4)
        assert sum(torch.tensor(a).exp()) == pytest.approx(1.0, abs=1e-4)
    # with no prior the choice is the letter greedy decoding allowed only those letters would write
    ids = [tiny_llm.tokenizer(x, add_special_tokens=False)["input_ids"][0] for x in letters(20)]
    for r, scores in zip(recs, together):
        prompt = tiny_llm.prompt_for(r, corpus.items)
        with torch.inference_mode():
            logits = tiny_llm.model(**tiny_llm.tokenizer(prompt, return_tensors="pt")).logits[0, -1]
        n = len(scores)
        assert int(logits[ids[:n]].argmax()) == max(range(n), key=scores.__getitem__)
        assert tiny_llm.recommend([r], corpus.items)[0] == tiny_llm.lettered(r, None)[int(logits[ids[:n]].argmax())]


def test_letter_prior_and_its_fitted_weight():
    from llm.letters import choose, fit_prior_weight, position_prior

    prior = position_prior([0, 0, 0, 1, None, 7], n=4)  # 7: past the letters; None: no gold
    assert [round(math.exp(p) * 8, 6) for p in prior] == [4, 2, 1, 1]  # add-one counts over 4 + 4
    assert choose([-1.0, -0.5, -3.0], prior, 0.0) == 1  # the model alone
    assert choose([-1.0, -0.5, -3.0], prior, 1.0) == 0  # -1 + log 4/8 > -0.5 + log 2/8
    # rows: the model is right off A once and wrong off A twice; A is gold in two of them
    rows = [([-2.0, -0.1], 1), ([-0.9, -0.6], 0), ([-0.8, -0.7], 0)]
    weight, by_weight = fit_prior_weight(rows, position_prior([0, 0, 0], n=2), weights=(0.0, 0.5, 4.0))
    assert by_weight == {0.0: pytest.approx(1 / 3), 0.5: pytest.approx(1.0), 4.0: pytest.approx(2 / 3)}
    assert weight == 0.5
    assert fit_prior_weight([([-2.0, -0.1], 1)], prior[:2], weights=(0.0, 1.0))[0] == 0.0  # ties: the smallest


def test_cross_fitting_trains_without_the_held_out_fold_and_predicts_only_it(base_run, tiny_corpus_dir, corpus,
                                                                             tmp_path):
    out = tmp_path / "fold0"
    assert train_llm.main(["--data", str(tiny_corpus_dir), "--base-model", str(base_run), "--config",
                           str(CONFIGS / "llm_lora_tiny.yaml"), "--max-steps", "1", "--val-generate", "0",
                           "--max-test-samples", "1", "--max-train-samples", "0", "--predict-splits",
                           "--cross-fit", "0/2", "--out", str(out)]) == 0
    train = [s for s in build_samples(corpus, "train") if s.task != "recommend" or s.candidates]
    held = {s.key for s in train if fold_of(s.sid, 2) == 0}
    assert held and len(held) < len(train)
    predicted = {json.loads(line)["key"] for line in (out / "predictions_train.jsonl").read_text().splitlines()}
    assert predicted == held
    stats = json.loads((out / "data_stats.json").read_text())["cross_fit"]
    trained_on = set(stats["train_dialogues"])
    assert trained_on and not trained_on & {s.sid for s in train if fold_of(s.sid, 2) == 0}
    assert trained_on == {s.sid for s in train if fold_of(s.sid, 2) == 1}
    with pytest.raises(PresalesError, match="--cross-fit must be"):
        train_llm.main(["--data", str(tiny_corpus_dir), "--base-model", str(base_run), "--out", str(tmp_path / "x"),
                        "--cross-fit", "2/2"])


def test_a_crs_that_predicted_part_of_the_train_split_and_predictions_per_task(base_run, tiny_corpus_dir, corpus,
                                                                                tmp_path):
    """PROFILE=gpu's CRS predicts the first N samples of each task of every split: the CRS-assisted LLM
    trains on the train samples that have a CRS prediction, and --max-predict-per-task N predicts the
    same samples of valid and test as that CRS."""
    def usable(split):
        return [s for s in build_samples(corpus, split) if s.task != "recommend" or s.candidates]

    hinted = first_per_task(usable("train"), 3)
    crs_file = tmp_path / "crs_predictions.jsonl"
    crs_file.write_text("".join(json.dumps({"key": s.key, "task": s.task, "prediction": [s.target, *s.candidates]
                                            if s.task == "recommend" else s.target}, ensure_ascii=False) + "\n"
                                for s in hinted), "utf-8")
    out = tmp_path / "llm-crs"
    assert train_llm.main(["--data", str(tiny_corpus_dir), "--base-model", str(base_run), "--config",
                           str(CONFIGS / "llm_lora_tiny.yaml"), "--max-steps", "1", "--val-generate", "0",
                           "--max-test-samples", "0", "--max-train-samples", "0", "--crs-predictions", str(crs_file),
                           "--max-predict-per-task", "2", "--predict-splits", "valid", "test", "--out", str(out),
                           "--candidate-order", "data"]) == 0
    assert LLM.load(out).settings.candidate_popularity == {}
    stats = json.loads((out / "data_stats.json").read_text())
    assert stats["train"] == {**{t: sum(s.task == t for s in hinted) for t in ("understand", "elicit", "recommend",
                                                                                "respond")},
                              "respond_asks": sum(s.task == "respond" and bool(s.asked) for s in hinted)}
    for split in ("valid", "test"):
        predicted = [json.loads(line)["key"] for line in (out / f"predictions_{split}.jsonl").read_text().splitlines()]
        assert sorted(predicted) == sorted(s.key for s in first_per_task(usable(split), 2)), split


def test_eval_llm_eval_scores_the_reply_checks_with_the_train_splits_cues(lora_run, tiny_corpus_dir, monkeypatch):
    """As training does (tests above): without the cues a reply asking '多大' about 年龄 would not count."""
    import llm.evaluation
    from eval.llm_eval import evaluate_run

    seen = {}
    monkeypatch.setattr(llm.evaluation, "evaluate_llm",
                        lambda llm, samples, items, crs, **kw: seen.update(kw, samples=samples) or ({}, []))
    evaluate_run(lora_run, tiny_corpus_dir, "test", tasks=("respond",), device="cpu")
    cues = seen["cue_samples"]
    assert cues and all(s.split == "train" and s.task == "respond" for s in cues)
    assert seen["samples"] and all(s.split == "test" for s in seen["samples"])
