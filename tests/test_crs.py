"""The unified CRS end to end on the tiny embedded corpus: training, inference API, errors.

Runs share a few short trainings of the `tiny` preset (session fixtures)."""
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from crs.config import CRSConfig, CRSConfigError, preset
from crs.data import Encoder
from crs.inference import CRS
from crs.model import ModelLoadError, build_tokenizer
from training.crs import main as train_main
from uneed.errors import PresalesError
from uneed.tasks import CRSExample, SPECIAL_TOKENS, Utterance, build_samples, crs_example, write_predictions

FAST = ["--preset", "tiny", "--progress", "false", "--lr", "3e-3", "--batch-size", "32", "--valid-samples", "20",
        "--predict-splits", "test"]


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("crs_run")
    # --context gold: earlier turns carry their annotations, as in training (this run is about fitting)
    rc = train_main(["--data", str(tiny_corpus_dir), "--out", str(out), "--rec-epochs", "1", "--epochs", "8",
                     "--predict-splits", "test", "train", *FAST[:-2], "--batch-size", "16", "--context", "gold"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def tiny_crs(tiny_run):
    return CRS.load(tiny_run)


@pytest.fixture(scope="session")
def tiny_corpus(tiny_corpus_dir):
    from uneed.corpus import load_corpus

    return load_corpus(tiny_corpus_dir)


# ------------------------------------------------------------------------------------ tokenizer/config
def test_char_tokenizer_covers_the_real_samples(samples_dir):
    from uneed.corpus import load_corpus
    from uneed.vocab import unknown_rate

    corpus = load_corpus(samples_dir)
    train = [crs_example(s, corpus.items) for s in build_samples(corpus, "train")]
    tok = build_tokenizer([t for ex in train for t in (ex.source, ex.target)])
    others = [crs_example(s, corpus.items) for split in ("valid", "test") for s in build_samples(corpus, split)]
    assert unknown_rate(tok, [ex.source + ex.target for ex in others]) < 0.01
    for special in SPECIAL_TOKENS:  # each special token is one token
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1


def test_bad_config_values_are_clear():
    with pytest.raises(CRSConfigError, match="behaviour_encoder"):
        CRSConfig(behaviour_encoder="lstm")
    with pytest.raises(CRSConfigError, match="unknown CRS preset"):
        preset("huge")
    with pytest.raises(CRSConfigError, match="unknown CRS config field"):
        CRSConfig.from_dict({"d_model": 64, "colour": "red"})


def test_truncation_keeps_the_latest_turns_and_the_prompt():
    tok = build_tokenizer(["早晚一二三四五六七八九十"])
    from crs.catalog import Catalog

    enc = Encoder(tok, Catalog(["a"]), max_source_len=40, max_target_len=8)
    old = "[user]" + "早" * 50
    new = "[system]晚晚晚晚 Identify attributes and values:"
    ids, truncated = enc.source(old + new)
    assert truncated and len(ids) == 40
    text = tok.decode(ids[1:-1])
    assert text.endswith("Identify attributes and values:") and "晚晚晚晚" in text
    assert ids[0] == enc.bos and ids[-1] == enc.eos


def test_a_target_too_long_is_cut_after_its_last_whole_clause():
    tok = build_tokenizer(["一二三四五六七八九十，。"])
    from crs.catalog import Catalog

    enc = Encoder(tok, Catalog(["a"]), max_source_len=40, max_target_len=8)
    def text(ids):
        assert ids[-1] == enc.eos and len(ids) <= 8
        return tok.decode(ids[:-1]).replace(" ", "")
    assert text(enc.target("一二三，四五六，七八九")) == "一二三，四五六"  # the comma before the cut goes
    assert text(enc.target("一二。三四五六，七八九")) == "一二。三四五六"
    assert text(enc.target("一二三。四五六七八九")) == "一二三。"  # a sentence's end stays
    assert text(enc.target("一二三四五六七八九")) == "一二三四五六七"  # no clause fits: cut mid-clause
    assert text(enc.target("一二三，四五")) == "一二三，四五"  # a target that fits stays whole


def test_a_prefix_stays_whole_at_the_start_and_the_history_after_it_loses_its_oldest_tokens():
    tok = build_tokenizer(["早晚一二三四五六七八九十"])
    from crs.catalog import Catalog

    enc = Encoder(tok, Catalog(["a"]), max_source_len=40, max_target_len=8)
    plan = "[elicit]一二三 Generate a response:"
    ids, truncated = enc.source("[user]" + "早" * 50 + "[system]晚晚晚晚", plan)
    assert truncated and len(ids) == 40 and ids[0] == enc.bos and ids[-1] == enc.eos
    text = tok.decode(ids[1:-1]).replace(" ", "")
    assert text.startswith("[elicit]一二三Generatearesponse:") and text.endswith("[system]晚晚晚晚")
    ids, truncated = enc.source("[user]早", plan)  # short: nothing cut
    assert not truncated and tok.decode(ids[1:-1]).replace(" ", "").endswith("response:[user]早")
    for prefix in ("", "[elicit]一"):  # a source that fits, with or without a prefix, stays whole
        ids, truncated = enc.source("[user]" + "早" * 30, prefix)
        assert not truncated and tok.decode(ids[1:-1]).replace(" ", "") == prefix + "[user]" + "早" * 30
    ids, truncated = enc.source("[user]早", "一" * 60)  # a prefix over the budget keeps its first tokens
    assert truncated and len(ids) == 40 and set(tok.decode(ids[1:-1]).replace(" ", "")) == {"一"}
    with pytest.raises(CRSConfigError, match="respond_context_turns"):
        CRSConfig(respond_context_turns=-1)


# ------------------------------------------------------------------------------------ training
def test_training_lowers_the_loss_and_writes_the_run(tiny_run):
    rows = [json.loads(line) for line in (tiny_run / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [1] + [2] * 8
    gen = [r["train_loss_generate"] for r in rows if "train_loss_generate" in r]
    rec = [r["train_loss_recommend"] for r in rows]
    assert gen[-1] < gen[0] - 1.0
    assert rec[-1] < rec[0]
    for name in ("config.yaml", "best/crs_config.json", "checkpoint/trainer.pt", "curves.png", "test_metrics.json",
                 "predictions_test.jsonl", "predictions_train.jsonl"):
        assert (tiny_run / name).exists(), name
    metrics = json.loads((tiny_run / "test_metrics.json").read_text())
    for task in ("understand", "elicit", "recommend", "recommend_catalog", "respond"):
        assert "all" in metrics["test"][task]
    assert set(metrics["test"]["recommend"]["all"]) >= {"accuracy", "hit@5", "mrr@5"}
    assert set(metrics["test"]["recommend_catalog"]["all"]) >= {"hit@10", "hit@50", "mrr@50"}
    rows = [json.loads(line) for line in (tiny_run / "predictions_test.jsonl").read_text().splitlines()]
    rec_rows = [r for r in rows if r["task"] == "recommend"]
    assert rec_rows and all(isinstance(r["prediction"], list) and len(r["prediction"]) == 20 for r in rec_rows)
    assert all(isinstance(r["prediction"], str) for r in rows if r["task"] != "recommend")


def test_short_run_beats_the_baselines_on_train_data(tiny_run, tiny_corpus):
    """The CRS fits its train data better than popularity ranks it; its understanding is far above 0."""
    from uneed.baselines import PopularityRecommender
    from uneed.metrics import evaluate, rank_of
    from uneed.tasks import read_predictions

    preds = read_predictions(tiny_run / "predictions_train.jsonl")
    samples = [s for s in build_samples(tiny_corpus, "train", ["recommend", "understand"])
               if s.task == "understand" or s.candidates]
    rec = [s for s in samples if s.task == "recommend"]
    pop = PopularityRecommender().fit(tiny_corpus)
    base = [rank_of(s.target, pop.rank(s.candidates)) for s in rec]
    ours = [rank_of(s.target, preds[s.key]) for s in rec]
    base_m = evaluate("recommend", base, base)["all"]
    ours_m = evaluate("recommend", ours, ours)["all"]
    assert ours_m["mrr@5"] > base_m["mrr@5"], (ours_m, base_m)
    from uneed.tasks import parse_tags

    und = [s for s in samples if s.task == "understand"]
    f1 = evaluate("understand", [parse_tags(preds[s.key])[0] for s in und], [s.target for s in und])["all"]["f1"]
    assert f1 > 0.05


def test_short_run_beats_the_lexicon_matcher_on_train_data(tiny_corpus_dir, tiny_corpus, tmp_path):
    """Fitted on a few train dialogues for under a minute, the CRS tags their utterances better than the
    lexicon matcher built from the whole train split (which knows every annotated value string)."""
    from crs.evaluate import split_examples
    from uneed.baselines import LexiconMatcher
    from uneed.metrics import evaluate
    from uneed.tasks import parse_tags

    n = 16
    out = tmp_path / "fit"
    assert train_main(["--data", str(tiny_corpus_dir), "--out", str(out), "--rec-epochs", "1", "--epochs", "60",
                       "--max-train-samples", str(n), "--predict-splits", *FAST[:-2], "--valid-samples", "2",
                       "--batch-size", "8"]) == 0
    # the last epoch's model (RUN/best is chosen on the valid split, which says nothing about fitting)
    fitted = CRS.load(out / "checkpoint" / "model")
    samples, examples = split_examples(tiny_corpus, "train", tasks=("understand",), max_per_task=n)
    gold = [s.target for s in samples]
    ours = evaluate("understand", [parse_tags(r["prediction"])[0] for r in fitted.predict_examples(examples, 0)],
                    gold)["all"]["f1"]
    lexicon = LexiconMatcher().fit(build_samples(tiny_corpus, "train", ["understand"]))
    base = evaluate("understand", [lexicon.predict(s.current.text, s.domain) for s in samples], gold)["all"]["f1"]
    assert ours > base, (ours, base)


def test_bad_data_dir_and_bad_config_are_clear_errors(tmp_path, capsys):
    assert train_main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # a run that failed on its inputs leaves no run directory
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("epochs: 2\ncolour: red\n")
    assert train_main(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--config", str(cfg)]) == 2
    assert "unknown argument" in capsys.readouterr().err
    assert train_main(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--preset", "huge"]) == 2
    assert "unknown CRS preset" in capsys.readouterr().err
    assert train_main(["--data", str(tmp_path), "--out", str(tmp_path / "run2"), "--resume"]) == 2
    assert train_main(["--data", str(tmp_path), "--out", str(tmp_path / "run3"), "--repeat-respond", "0"]) == 2
    assert "--repeat-respond must be 1 or more" in capsys.readouterr().err and not (tmp_path / "run3").exists()


def test_repeat_respond_trains_each_reply_n_times_per_stage_2_epoch():
    from types import SimpleNamespace

    from training.crs import CRSTrainArgs, count_batches, epoch_feats

    feats = [SimpleNamespace(task=t) for t in ["respond"] * 5 + ["understand"] * 3 + ["recommend"] * 4]
    twice = epoch_feats(feats, {"respond", "understand", "recommend"}, 2)
    assert [f.task for f in twice].count("respond") == 10 and len(twice) == 17
    assert epoch_feats(feats, {"recommend", "understand"}, 2) == feats[5:]  # stage 1 has no replies
    args = CRSTrainArgs(data="d", out="o", batch_size=4, rec_batch_size=4, repeat_respond=2)
    assert count_batches(feats, args, {"respond", "understand", "recommend"}) == 3 + 1 + 1  # the schedule's steps


def test_stage_3_trains_the_decoder_alone_on_the_replies(tiny_corpus_dir, tmp_path):
    """--reply-epochs: from stage 2's best model, only the decoder and the copy head move, their reply loss
    falls from one stage-3 epoch to the next, and the last one is the model the run keeps; the encoder, its
    heads and the recommender are stage 2's, so their validation losses do not move."""
    from crs.model import UnifiedCRS

    out = tmp_path / "run"
    assert train_main(["--data", str(tiny_corpus_dir), "--out", str(out), "--rec-epochs", "1", "--epochs", "1",
                       "--reply-epochs", "2", "--understand-head", "extract", "--elicit-head", "classify", *FAST]) == 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [1, 2, 3, 3]
    assert set(rows[2]) >= {"train_loss_generate", "valid_respond_bleu-1"} and "train_loss_recommend" not in rows[2]
    assert rows[3]["train_loss_generate"] < rows[2]["train_loss_generate"]
    for key in ("valid_loss_extract", "valid_loss_classify", "valid_recommend_mrr@5"):
        assert rows[3][key] == pytest.approx(rows[1][key], abs=1e-6), key
    assert json.loads((out / "test_metrics.json").read_text())["best_epoch"] == 4
    stage2 = UnifiedCRS.load(out / "checkpoint" / "model")[0].state_dict()  # the checkpoint of the last stage-2 epoch
    final = UnifiedCRS.load(out / "best")[0].state_dict()
    moved = {k for k in final if not torch.equal(final[k], stage2[k])}
    assert moved and all(k.startswith(("seq2seq.model.decoder.", "copy.")) for k in moved), sorted(moved)[:5]
    assert any(k.startswith("copy.") for k in moved) and any(".encoder_attn." in k for k in moved)
    # where the decoder also answers understanding or elicitation, training it on the replies alone is refused
    assert train_main(["--data", str(tiny_corpus_dir), "--out", str(tmp_path / "refused"), "--reply-epochs", "1",
                       *FAST]) == 2
    assert not (tmp_path / "refused").exists()
    assert train_main(["--data", str(tiny_corpus_dir), "--out", str(tmp_path / "negative"), "--reply-epochs", "-1",
                       "--understand-head", "extract", "--elicit-head", "classify", *FAST]) == 2


def test_the_crs_trains_on_faithful_replies_unless_told_not_to(tiny_corpus):
    """--faithful-replies (the default) cuts the clauses of the train replies that state values untrue of their
    items (uneed.replies.faithful_targets); the other tasks' examples, and the replies without such a clause,
    are the same either way."""
    from crs.evaluate import split_examples
    from training.crs import CRSTrainArgs

    assert CRSTrainArgs(data="d", out="o").faithful_replies
    _, plain = split_examples(tiny_corpus, "train")
    _, faithful = split_examples(tiny_corpus, "train", faithful_replies=True)
    plain_by_key = {ex.key: ex for ex in plain}
    changed = [ex for ex in faithful if ex.target != plain_by_key[ex.key].target]
    assert changed and all(ex.task == "respond" for ex in changed)
    assert {ex.key for ex in faithful} <= set(plain_by_key)
    assert all(len(ex.target) < len(plain_by_key[ex.key].target) for ex in changed)


def test_two_trainings_of_one_config_on_two_threads_end_with_equal_weights(tiny_corpus_dir, tmp_path):
    """training.runtime.set_seed picks torch's deterministic kernels on CPU: without them two 2-thread
    trainings of the default CRS parted (README, reproducibility)."""
    def weights(run):
        out = {f"{p.name}:{k}": v for p in sorted((run / "best").glob("*.pt"))
               for k, v in torch.load(p, map_location="cpu").items() if torch.is_tensor(v)}
        for p in sorted((run / "best" / "seq2seq").glob("*.safetensors")):  # the same tensors write the same bytes
            out[f"seq2seq:{p.name}"] = torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8)
        return out

    runs = []
    for k in (1, 2):
        runs.append(tmp_path / f"run{k}")
        assert train_main(["--data", str(tiny_corpus_dir), "--out", str(runs[-1]), "--rec-epochs", "1", "--epochs", "1",
                           "--num-threads", "2", *FAST]) == 0
    a, b = weights(runs[0]), weights(runs[1])
    assert len(a) > 10 and any(k.startswith("seq2seq:") for k in a) and a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert torch.are_deterministic_algorithms_enabled()


def test_resume_continues_from_the_checkpoint(tiny_corpus_dir, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data", str(tiny_corpus_dir), "--out", str(out), "--max-train-samples", "40", "--rec-epochs", "1",
            *FAST]
    assert train_main([*args, "--epochs", "1"]) == 0
    assert train_main([*args, "--epochs", "2", "--resume"]) == 0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    llm = tmp_path / "llm.jsonl"
    write_predictions(llm, [{"key": s.key, "prediction": "x"} for s in build_samples(tiny_corpus, "train")])
    capsys.readouterr()
    assert train_main([*args, "--epochs", "3", "--resume", "--llm-predictions", str(llm)]) == 2
    assert "--llm-predictions" in capsys.readouterr().err


def test_resume_restores_optimizer_and_scheduler_and_continues_the_same_curve(tiny_corpus_dir, tmp_path,
                                                                               monkeypatch):
    """A run stopped after its first epoch and resumed writes the same second epoch as a run never
    stopped: weights, AdamW moments, the LR schedule and the random streams all come back."""
    from training.crs import Trainer

    args = ["--data", str(tiny_corpus_dir), "--max-train-samples", "40", "--rec-epochs", "1", "--epochs", "1",
            *FAST]
    assert train_main([*args, "--out", str(tmp_path / "straight")]) == 0
    train_epoch = Trainer.train_epoch

    def stop_at_the_second_epoch(self, epoch, stage, rng):
        if epoch == 1:
            raise KeyboardInterrupt  # as if the machine went away after the epoch-1 checkpoint
        return train_epoch(self, epoch, stage, rng)

    monkeypatch.setattr(Trainer, "train_epoch", stop_at_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_main([*args, "--out", str(tmp_path / "stopped")])
    monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
    # an interrupted run lives in its staging directory until it finishes (training.runtime.RunDir.staged)
    ckpt = torch.load(tmp_path / ".stopped.staging" / "checkpoint" / "trainer.pt", map_location="cpu",
                      weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["optimizer"]["state"] and ckpt["scheduler"]["last_epoch"] > 0
    assert train_main([*args, "--out", str(tmp_path / "stopped"), "--resume"]) == 0

    def rows(run):
        return [json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]

    straight, resumed = rows("straight"), rows("stopped")
    assert [r["epoch"] for r in resumed] == [1, 2]
    for key in ("train_loss_recommend", "train_loss_generate", "valid_loss_generate", "valid_recommend_mrr@5"):
        assert resumed[1][key] == pytest.approx(straight[1][key], rel=1e-4, abs=1e-6), key


def test_llm_assisted_variant_trains_and_uses_the_llm_item(tiny_corpus_dir, tiny_corpus, tmp_path):
    # an "LLM" that is right about everything: its item is the gold one, its tags the gold tags
    rows = []
    for split in ("train", "valid", "test"):
        for s in build_samples(tiny_corpus, split):
            pred = [s.target] if s.task == "recommend" else ("；".join(s.target) if isinstance(s.target, list)
                                                              else s.target)
            rows.append({"key": s.key, "task": s.task, "prediction": pred})
    preds = tmp_path / "llm.jsonl"
    write_predictions(preds, rows)
    out = tmp_path / "run"
    assert train_main(["--data", str(tiny_corpus_dir), "--out", str(out), "--llm-predictions", str(preds),
                       "--rec-epochs", "2", "--epochs", "1", "--max-train-samples", "60", *FAST]) == 0
    crs = CRS.load(out)
    assert crs.config.use_llm
    assert crs.model.recommender.use_llm
    sample = next(s for s in build_samples(tiny_corpus, "test", ["recommend"]) if s.candidates)
    wrong = next(c for c in sample.candidates if c != sample.target)
    with_llm = crs.recommend([sample.context], candidates=[sample.candidates], llm_items=[wrong], k=None)[0]
    without = crs.recommend([sample.context], candidates=[sample.candidates], k=None)[0]
    assert [x.score for x in with_llm] != [x.score for x in without]
    # equation 4 at work: with the gold item as the LLM's item, the gold item moves up on average
    recs = [s for s in build_samples(tiny_corpus, "test", ["recommend"]) if s.candidates][:40]
    contexts, candidates = [s.context for s in recs], [s.candidates for s in recs]

    def gold_ranks(llm_items):
        ranked = crs.recommend(contexts, candidates=candidates, llm_items=llm_items, k=None)
        return np.array([[x.item_id for x in r].index(s.target) + 1 for r, s in zip(ranked, recs)])

    plain, helped = gold_ranks(None), gold_ranks([s.target for s in recs])
    assert helped.mean() < plain.mean(), (helped.mean(), plain.mean())
    assert (helped < plain).sum() > (helped > plain).sum()
    ex = crs_example(sample, tiny_corpus.items, [wrong])
    assert isinstance(ex, CRSExample) and ex.llm_item == wrong
    und = next(s for s in build_samples(tiny_corpus, "test", ["understand"]))
    assert "[LLM]" in crs_example(und, tiny_corpus.items, "品类：面膜").source


def test_base_model_checkpoint(tiny_corpus_dir, tmp_path):
    from transformers import BartConfig, BartForConditionalGeneration

    from uneed.vocab import build_char_tokenizer

    base = tmp_path / "bart"
    tok = build_char_tokenizer(["品类面膜"])
    tok.save_pretrained(str(base))
    cfg = BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=256,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     decoder_start_token_id=tok.eos_token_id)
    BartForConditionalGeneration(cfg).save_pretrained(str(base))
    out = tmp_path / "run"
    assert train_main(["--data", str(tiny_corpus_dir), "--out", str(out), "--base-model", str(base),
                       "--rec-epochs", "1", "--epochs", "1", "--max-train-samples", "20", "--max-predict-samples", "5",
                       *FAST]) == 0
    crs = CRS.load(out)
    assert crs.model.seq2seq.get_input_embeddings().weight.shape[0] == len(crs.tok) > len(tok)
    assert all(len(crs.tok(t, add_special_tokens=False)["input_ids"]) == 1 for t in SPECIAL_TOKENS)
    assert crs.config.base_model == str(base)
    assert isinstance(crs.respond([[Utterance("用户", "有面膜吗", "用户需求")]])[0], str)
    assert train_main(["--data", str(tiny_corpus_dir), "--out", str(tmp_path / "r2"),
                       "--base-model", str(tmp_path / "nothing"), *FAST]) == 2


# ------------------------------------------------------------------------------------ inference API
def test_inference_api(tiny_crs, tiny_corpus, caplog):
    s = next(s for s in build_samples(tiny_corpus, "test", ["recommend"]) if s.candidates and s.context)
    ctx = s.context
    tags = tiny_crs.understand([ctx, ctx[:1]])
    assert len(tags) == 2 and all(isinstance(t, list) for t in tags)
    keys = tiny_crs.elicit([ctx], needs=[[("品类", "面膜")]])
    assert isinstance(keys[0], list)
    reply = tiny_crs.respond([ctx], attributes=[["肤质："]], items=[[s.target]])
    assert isinstance(reply[0], str)
    with caplog.at_level(logging.WARNING):
        ranked = tiny_crs.recommend([ctx], behaviours=[s.behaviours], candidates=[s.candidates + ["no-such-item"]],
                                    k=None)[0]
    assert "unknown item id" in caplog.text
    assert sorted(x.item_id for x in ranked) == sorted(s.candidates)
    assert all(a.score >= b.score for a, b in zip(ranked, ranked[1:]))
    top = tiny_crs.recommend([ctx], behaviours=[s.behaviours], k=10)[0]
    assert len(top) == 10
    again = tiny_crs.recommend([ctx], behaviours=[s.behaviours], k=10, exclude=[[top[0].item_id]])[0]
    assert top[0].item_id not in [x.item_id for x in again]
    assert [x.item_id for x in again[:9]] == [x.item_id for x in top[1:10]]
    with pytest.raises(PresalesError, match="non-empty context"):
        tiny_crs.understand([[]])
    assert isinstance(tiny_crs.elicit([[]])[0], list)  # documented: answers from the prompt alone
    with pytest.raises(PresalesError, match="entries for"):
        tiny_crs.recommend([ctx, ctx], behaviours=[[]])


def test_catalog_ranking_equals_brute_force(tiny_crs, tiny_corpus):
    samples = [s for s in build_samples(tiny_corpus, "test", ["recommend"]) if s.candidates][:4]
    examples = [crs_example(s, tiny_crs.items) for s in samples]
    feats = tiny_crs.encoder.encode_all(examples)
    users, _ = tiny_crs.user_vectors(feats)
    from crs.data import collate

    batch = collate(feats, tiny_crs.encoder.pad)
    with torch.no_grad():
        dense = tiny_crs.model.recommender.scores(torch.from_numpy(users), batch["behaviours"])
    got = tiny_crs.recommend([s.context for s in samples], behaviours=[s.behaviours for s in samples], k=50)
    for j, items in enumerate(got):
        assert [x.item_id for x in items] == [tiny_crs.catalog.ids[r] for r in torch.topk(dense[j], 50).indices]
        np.testing.assert_allclose([x.score for x in items], torch.topk(dense[j], 50).values.numpy(), rtol=1e-4,
                                   atol=1e-4)


def test_copy_head_gives_a_distribution_and_cached_decoding_equals_full_passes(tiny_crs):
    """The pointer-generator mixes two distributions into one; greedy decoding with the decoder's
    key/value cache picks the same tokens, with the same scores, as decoding by a full forward pass
    over the whole prefix at every step (the cache API differs across transformers releases)."""
    model, tok = tiny_crs.model.cpu().eval(), tiny_crs.tok
    batch = tok(["有没有适合干皮的面霜[understand]", "想买个滚筒洗衣机，预算三千左右[elicit]"], padding=True,
                return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    steps = 10
    with torch.no_grad():
        cached = model.generate(ids, mask, steps)
        enc = model.encode(ids, mask)
        decoder = model.seq2seq.get_decoder()
        for t in range(1, cached.shape[1]):
            h = decoder(input_ids=cached[:, :t], encoder_hidden_states=enc, encoder_attention_mask=mask,
                        use_cache=False).last_hidden_state
            logp = model.copy(h, enc, ids, mask, model._lm_logits(h))
            assert torch.allclose(logp.exp().sum(-1), torch.ones(logp.shape[:2]), atol=1e-4)
            full = logp[:, -1].argmax(-1)
            for row in range(ids.shape[0]):
                if model.seq2seq.config.eos_token_id in cached[row, :t].tolist():
                    continue  # finished: the cached decoder pads from here on
                assert cached[row, t] == full[row], (row, t)
    assert cached.shape[1] > 1


def test_long_context_is_truncated_and_logged(tiny_crs, caplog):
    ctx = [Utterance("用户" if i % 2 == 0 else "客服", f"第{i}句话，我想要一个面膜", "用户需求") for i in range(60)]
    with caplog.at_level(logging.INFO, logger="crs.data"):
        out = tiny_crs.understand([ctx])
    assert len(out) == 1
    assert "truncated from the left" in caplog.text


def test_load_errors_are_clear(tiny_run, tmp_path):
    with pytest.raises(ModelLoadError, match="no such CRS run"):
        CRS.load(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="not a CRS run"):
        CRS.load(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run / "best", broken)
    (broken / "recommender.pt").unlink()
    with pytest.raises(ModelLoadError, match="incomplete"):
        CRS.load(broken)
    (broken / "recommender.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelLoadError, match="corrupt recommender"):
        CRS.load(broken)
    shutil.copy(tiny_run / "best" / "recommender.pt", broken / "recommender.pt")
    (broken / "crs_config.json").write_text("{oops")
    with pytest.raises(ModelLoadError, match="corrupt CRS config"):
        CRS.load(broken)
    (broken / "crs_config.json").write_text((tiny_run / "best" / "crs_config.json").read_text())
    for f in (broken / "seq2seq").glob("*.safetensors"):
        f.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="seq2seq"):
        CRS.load(broken)


def test_padding_to_a_gpu_multiple_changes_no_answer(tiny_crs, tiny_corpus, monkeypatch):
    """On a GPU batches are padded to a multiple of 64 tokens (uneed.device.pad_multiple): the extra padding
    is masked everywhere, so every task answers exactly as with the tightest padding."""
    import crs.data

    samples = [s for s in build_samples(tiny_corpus, "test", ["recommend"]) if s.candidates and s.context][:4]
    ctxs = [s.context for s in samples]

    def answers():
        ranked = tiny_crs.recommend(ctxs, behaviours=[s.behaviours for s in samples],
                                    candidates=[s.candidates for s in samples], k=None)
        return (tiny_crs.understand(ctxs), tiny_crs.elicit(ctxs),
                [[(x.item_id, round(x.score, 4)) for x in r] for r in ranked],
                tiny_crs.respond(ctxs, attributes=[["肤质："]] * len(ctxs), items=[[s.target] for s in samples]))

    tight = answers()
    widths = []
    real_collate = crs.data.collate

    def spy(*a, **k):
        batch = real_collate(*a, **k)
        widths.append(batch["input_ids"].shape[1])
        return batch

    monkeypatch.setattr(crs.data, "pad_multiple", lambda device: 64)
    monkeypatch.setattr("crs.inference.collate", spy)
    assert answers() == tight
    assert widths and all(w % 64 == 0 for w in widths)


def test_cross_fitting_predicts_only_the_held_out_fold_of_the_train_split(tiny_corpus_dir, tiny_corpus, tmp_path,
                                                                          capsys):
    from uneed.tasks import fold_of, parse_cross_fit, split_by_fold

    out = tmp_path / "fold1"
    fast = [a if a != "test" else "train" for a in FAST]  # --predict-splits train
    assert train_main(["--data", str(tiny_corpus_dir), "--out", str(out), "--rec-epochs", "1", "--epochs", "1",
                       "--cross-fit", "1/2", *fast]) == 0
    train = [s for s in build_samples(tiny_corpus, "train") if s.task != "recommend" or s.candidates]
    predicted = {json.loads(line)["key"] for line in (out / "predictions_train.jsonl").read_text().splitlines()}
    assert predicted == {s.key for s in train if fold_of(s.sid, 2) == 1}
    # the folds split dialogues, not samples, and are the same every time
    kept, held = split_by_fold(train, parse_cross_fit("1/2"))
    assert not {s.sid for s in kept} & {s.sid for s in held} and len(kept) + len(held) == len(train)
    for bad in ("1", "2/2", "-1/2", "0/1", "a/b"):
        with pytest.raises(PresalesError, match="--cross-fit must be"):
            parse_cross_fit(bad)
    assert train_main(["--data", str(tiny_corpus_dir), "--out", str(tmp_path / "x"), "--cross-fit", "0/2", *FAST]) == 2
    assert "add train to --predict-splits" in capsys.readouterr().err
