import math

import pytest

from uneed.metrics import bleu_n, distinct_n, evaluate, get_metric, rank_of


def test_set_metrics_by_hand():
    pred, gold = ["性别：男", "品类：水乳", "品类：面膜"], ["性别：男", "品类：水乳"]
    assert get_metric("precision")(pred, gold) == pytest.approx(2 / 3)
    assert get_metric("recall")(pred, gold) == 1.0
    assert get_metric("f1")(pred, gold) == pytest.approx(0.8)
    assert get_metric("f1")(["a"], ["b"]) == 0.0 and get_metric("f1")([], ["b"]) == 0.0


def test_rank_metrics_by_hand():
    assert get_metric("hit@5")(4) == 1.0 and get_metric("hit@5")(5) == 0.0 and get_metric("hit@5")(None) == 0.0
    assert get_metric("mrr@5")(2) == pytest.approx(1 / 3) and get_metric("mrr@50")(60) == 0.0
    assert get_metric("ndcg@10")(1) == pytest.approx(1 / math.log2(3))
    assert get_metric("accuracy")(0) == 1.0 and get_metric("accuracy")(1) == 0.0
    assert rank_of("b", ["a", "b"]) == 1 and rank_of("z", ["a"]) is None
    with pytest.raises(KeyError):
        get_metric("nope")


def test_text_metrics_by_hand():
    assert distinct_n("好好的", 1) == pytest.approx(2 / 3)
    assert distinct_n("好好好", 2) == pytest.approx(1 / 2)
    assert distinct_n("", 1) == 0.0
    # pred 'abcd' vs gold 'abce': unigram precision 3/4, bigram 2/3, equal length so no penalty
    assert bleu_n("abcd", "abce", 1) == pytest.approx(0.75)
    assert bleu_n("abcd", "abce", 2) == pytest.approx(math.sqrt(0.75 * 2 / 3))
    # a short prediction pays the brevity penalty exp(1 - 4/2)
    assert bleu_n("ab", "abcd", 1) == pytest.approx(math.exp(-1))
    assert bleu_n("xy", "abcd", 2) == 0.0


def test_evaluate_overall_and_per_category():
    out = evaluate("understand", [["a"], ["a", "b"], []], [["a"], ["b"], ["c"]], ["美妆行业", "美妆行业", "鞋类行业"])
    assert out["all"]["n"] == 3 and out["美妆行业"]["n"] == 2
    assert out["all"]["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert out["鞋类行业"]["precision"] == 0.0
    rec = evaluate("recommend", [0, 3, None], [None] * 3)
    assert rec["all"]["accuracy"] == pytest.approx(1 / 3) and rec["all"]["mrr@5"] == pytest.approx((1 + 0.25) / 3)
    resp = evaluate("respond", ["好好的"], ["好的"])
    assert resp["all"]["distinct-1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        evaluate("understand", [[]], [])
