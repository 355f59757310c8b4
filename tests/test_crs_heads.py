"""The CRS's classification heads (crs/heads.py) on the tiny embedded corpus: the labels, and a short
training in which each head learns (its loss falls, it beats its baseline on the data it saw)."""
import json
import math

import pytest
import torch

from crs.heads import KeySpace, bio_labels, bio_transitions, decode_bio, touching_span_log_prob, viterbi_bio
from uneed.needs import match_features
from crs.inference import CRS
from training.crs import main as train_main
from uneed.tasks import Utterance, build_samples, crs_example, parse_keys, parse_tags

N = 48  # train samples per task


def test_bio_labels_and_their_decoding_round_trip():
    keys = KeySpace(["品类", "肤质", "价位"], {"美妆行业": ["品类", "肤质", "价位"]})
    text = "有没有适合干皮的面霜，干皮用"
    labels, valueless = bio_labels(text, ["肤质：干皮", "品类：面霜", "肤质：干皮", "价位：", "未知：x"], keys)
    # the second 干皮 takes the next occurrence; '价位：' has no value; an unknown key is left out
    assert [text[i] for i, lab in enumerate(labels) if lab == 1 + 2 * 1] == ["干", "干"]
    assert valueless == [2]
    spans = decode_bio(labels, list(text), keys)
    assert spans == [("肤质", "干皮"), ("品类", "面霜"), ("肤质", "干皮")]
    assert decode_bio([4, 4, 0, 2], list("面霜好皮"), keys) == [("肤质", "面霜"), ("品类", "皮")]  # lenient I-
    assert keys.allowed("手机行业") == [True] * 3 and keys.allowed("美妆行业") == [True] * 3


def test_viterbi_reads_the_best_valid_bio_sequence():
    keys = KeySpace(["品类", "价位"], {"x": ["品类", "价位"]})  # labels: O, B-品类, I-品类, B-价位, I-价位
    allowed, may_start = bio_transitions(len(keys))
    valid = allowed > float("-inf")
    assert valid[1, 2] and valid[2, 2] and not valid[0, 2] and not valid[3, 2] and valid[2, 3]
    assert (may_start > float("-inf")).tolist() == [True, True, False, True, False]

    def lp(*rows):
        return torch.tensor(rows).log()

    # an I- after O is no span start: the token goes to O, its second choice that is valid
    probs = lp([0.9, 0.05, 0.01, 0.03, 0.01], [0.3, 0.1, 0.55, 0.03, 0.02])
    assert probs.argmax(-1).tolist() == [0, 2] and viterbi_bio(probs, allowed, may_start) == [0, 0]
    # a span keeps its key: after B-价位, I-价位 (0.4) beats the invalid I-品类 (0.5)
    probs = lp([0.05, 0.05, 0.05, 0.8, 0.05], [0.05, 0.02, 0.5, 0.03, 0.4])
    assert viterbi_bio(probs, allowed, may_start) == [3, 4]
    # a valid argmax sequence is kept as it is; an empty utterance has no labels
    probs = lp([0.1, 0.7, 0.1, 0.05, 0.05], [0.1, 0.1, 0.6, 0.1, 0.1], [0.8, 0.05, 0.05, 0.05, 0.05])
    assert viterbi_bio(probs, allowed, may_start) == [1, 2, 0]
    assert viterbi_bio(torch.zeros(0, 5), allowed, may_start) == []
    assert decode_bio([1, 2, 0], list("面霜好"), keys) == [("品类", "面霜")]


def test_spans_touch_as_rarely_as_in_the_training_tags():
    # labels: O, B-品类, I-品类, B-价位, I-价位; -100 marks untagged tokens
    rows = [[-100, 1, 2, 0, 3, 4, -100], [0, 1, 2, 2, 0], [3, 4, 1, 2]]  # 5 spans, one starts where one ends
    assert touching_span_log_prob(rows) == pytest.approx(math.log(2 / 7))
    assert touching_span_log_prob([[0, 1, 0, 3, 4, 0]] * 50) == pytest.approx(math.log(1 / 102))
    # one value whose tokens lean to different keys: '短' B-价位 0.6 / B-品类 0.2, '靴' I-品类 0.45 / B-品类 0.35
    probs = torch.tensor([[0.05, 0.2, 0.1, 0.6, 0.05], [0.1, 0.35, 0.45, 0.05, 0.05]]).log()
    keys = KeySpace(["品类", "价位"], {"x": ["品类", "价位"]})
    assert viterbi_bio(probs, *bio_transitions(len(keys))) == [3, 1]  # split into two touching spans
    never = touching_span_log_prob([[0, 1, 2, 0]] * 1000)  # annotations that never touch
    assert viterbi_bio(probs, *bio_transitions(len(keys), never)) == [1, 2]  # one span: 品类 短靴


def test_match_features_by_hand():
    needs = [("品牌", "苹果"), ("功能需求", "字大"), ("价位", "")]
    exact, contained, share, mean = match_features(needs, ["苹果", "大字体", "蓝色"])
    assert (exact, contained) == (1.0, 1.0)  # 苹果 equals; 字大 is neither equal nor contained
    assert share == pytest.approx(2.0) and mean == pytest.approx(1.0)  # 字大: both characters in 大字体
    assert match_features([], ["苹果"]) == [0.0, 0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def heads_run(tiny_corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("crs_heads")
    assert train_main(["--data", str(tiny_corpus_dir), "--out", str(out), "--preset", "tiny", "--progress", "false",
                       "--understand-head", "extract", "--elicit-head", "classify", "--needs-match",
                       "--rec-epochs", "1", "--epochs", "30", "--max-train-samples", str(N), "--batch-size", "16",
                       "--lr", "3e-3", "--valid-samples", "2", "--predict-splits"]) == 0
    return out


@pytest.fixture(scope="module")
def corpus(tiny_corpus_dir):
    from uneed.corpus import load_corpus

    return load_corpus(tiny_corpus_dir)


def test_each_head_lowers_its_loss(heads_run):
    rows = [json.loads(line) for line in (heads_run / "log.jsonl").read_text().splitlines()]
    for name in ("train_loss_extract", "train_loss_classify", "train_loss_recommend"):
        values = [r[name] for r in rows if name in r]
        assert values[-1] < 0.5 * values[0] if name != "train_loss_recommend" else values[-1] < values[0], (name, values)
    assert "train_loss_generate" in rows[-1]  # the responses are still generated
    for name in ("keys.json", "heads.pt", "item_values.json"):
        assert (heads_run / "checkpoint" / "model" / name).is_file(), name


def test_each_head_beats_its_baseline_on_its_train_data(heads_run, corpus):
    """On the samples it was fitted on (the last epoch's model): the extraction head tags better than the
    lexicon matcher built from the whole train split, the elicitation head asks better than the
    majority attribute, and the recommender with the needs bonus ranks better than popularity."""
    from crs.evaluate import predict_samples, score_predictions, split_examples
    from uneed.baselines import LexiconMatcher, MajorityElicitor, PopularityRecommender
    from uneed.metrics import evaluate, rank_of

    fitted = CRS.load(heads_run / "checkpoint" / "model")
    assert fitted.model.heads["match"].weight.weight.abs().sum() > 0  # the needs bonus was learnt
    samples, _ = split_examples(corpus, "train", max_per_task=N)
    ours = score_predictions(samples, predict_samples(fitted, corpus, samples, context="gold"))
    train = build_samples(corpus, "train", ["understand", "elicit"])
    lexicon, majority = LexiconMatcher().fit(train), MajorityElicitor().fit(train)
    und = [s for s in samples if s.task == "understand"]
    eli = [s for s in samples if s.task == "elicit"]
    rec = [s for s in samples if s.task == "recommend"]
    base_und = evaluate("understand", [lexicon.predict(s.current.text, s.domain) for s in und],
                        [s.target for s in und])["all"]["f1"]
    base_eli = evaluate("elicit", [majority.predict(s.domain) for s in eli], [s.target for s in eli])["all"]["f1"]
    pop = PopularityRecommender().fit(corpus)
    ranks = [rank_of(s.target, pop.rank(s.candidates)) for s in rec]
    base_rec = evaluate("recommend", ranks, ranks)["all"]["mrr@5"]
    assert ours["understand"]["all"]["f1"] > base_und, (ours["understand"]["all"], base_und)
    assert ours["elicit"]["all"]["f1"] > base_eli, (ours["elicit"]["all"], base_eli)
    assert ours["recommend"]["all"]["mrr@5"] > base_rec, (ours["recommend"]["all"], base_rec)


def test_heads_answer_through_the_inference_api(heads_run, corpus):
    crs = CRS.load(heads_run)
    assert crs.config.head_tasks == ("understand", "elicit") and crs.config.needs_match
    s = next(s for s in build_samples(corpus, "train", ["understand"]) if s.current.speaker == "用户")
    ctx = [*s.context, s.current]
    tags = crs.understand([ctx], domains=[s.domain])[0]
    for tag in tags:  # every value is a span of the utterance, every key one of the domain's
        key, _, value = tag.partition("：")
        assert key in crs.model.keys.domain_keys[s.domain]
        assert value in s.current.text
    domain_keys = crs.model.keys.domain_keys[s.domain]
    asked = Utterance("客服", "请问您的预算是多少呢", "系统提问", tags=[f"{domain_keys[0]}："], asked=[domain_keys[0]])
    for keys in crs.elicit([[*ctx, asked]], [[(domain_keys[1], "x")]], domains=[s.domain]):
        assert len(keys) == 1 and keys[0] in domain_keys and keys[0] not in domain_keys[:2]  # never asked twice
    items = crs.recommend([ctx], [[("品类", "面霜")]], k=5)[0]
    assert len(items) == 5 and items == sorted(items, key=lambda x: -x.score)


def test_a_heads_model_missing_its_heads_is_a_clear_error(heads_run, tmp_path):
    import shutil

    from crs.model import ModelLoadError

    broken = tmp_path / "model"
    shutil.copytree(heads_run / "best", broken)
    (broken / "heads.pt").unlink()
    with pytest.raises(ModelLoadError, match="heads.pt"):
        CRS.load(broken)
    torch.save({"nonsense": torch.zeros(1)}, broken / "heads.pt")
    with pytest.raises(ModelLoadError, match="corrupt heads"):
        CRS.load(broken)


def test_encoding_in_processes_equals_encoding_in_order(heads_run, corpus):
    """The full-size corpus is encoded by forked worker processes (a GPU waited a minute on one core):
    the features, in order, are those of encoding one example after another, the heads' too."""
    crs = CRS.load(heads_run)
    examples = [crs_example(s, crs.items) for s in build_samples(corpus, "train")]
    one_by_one = crs.encoder.encode_all(examples, processes=1)
    assert any(f.match for f in one_by_one) and any(f.tag_labels for f in one_by_one)
    assert crs.encoder.encode_all(examples, processes=3) == one_by_one
