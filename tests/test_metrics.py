import dataclasses
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


# ------------------------------------------------------------------------------------ reply checks
def stated_values_of(reply, known):
    from uneed.metrics import stated_values

    return stated_values(reply, known)


def _ask_ref(**kw):
    from uneed.metrics import ReplyReference

    return ReplyReference(asked={"肤质": ["干皮", "混合性", "油皮", "性皮"]}, **kw)


def test_ask_names_attribute_by_hand():
    from uneed.metrics import NOT_APPLICABLE, ReplyReference

    check = get_metric("ask-names-attribute")
    assert check("亲亲，请问您是什么肤质呢", _ask_ref()).hits == 1.0  # the key itself
    assert check("亲亲，请问是混合性还是干皮呢", _ask_ref()).hits == 1.0  # its values
    assert check("亲亲是中性皮肤吗", _ask_ref()).hits == 1.0  # a question cue ('性皮')
    miss = check("亲亲，请问您的预算是多少呢", _ask_ref())
    assert (miss.hits, miss.total) == (0.0, 1.0)
    assert check("这款卖得很好哦", ReplyReference()) == NOT_APPLICABLE  # not an ask action: not counted
    assert stated_values_of("预算400以内", {"40", "以内"}) == ["以内"]  # '40' inside '400' is not stated


def test_knowledge_true_counts_stated_values_by_hand():
    from uneed.metrics import NOT_APPLICABLE, ReplyReference, stated_values

    ref = ReplyReference(item_values=frozenset({"补水", "保湿", "干皮", "女"}), has_items=True,
                         known_values=frozenset({"补水", "保湿", "美白", "干皮", "油皮", "补水保湿", "女"}))
    check = get_metric("knowledge-true")
    # '补水保湿' is one (longest) known value, not in the item's knowledge; '干皮' is; '女' is too short to count
    assert stated_values("这款补水保湿，适合干皮，女生都爱", ref.known_values) == ["补水保湿", "干皮"]
    r = check("这款补水保湿，适合干皮，女生都爱", ref)
    assert (r.hits, r.total) == (1.0, 2.0)
    r = check("这款补水，适合干皮，也能美白", ref)
    assert (r.hits, r.total) == (2.0, 3.0)
    r = check("这款卖得很好哦", ref)
    assert (r.hits, r.total) == (0.0, 0.0)  # states nothing: adds nothing to the count
    assert check("这款补水", ReplyReference(known_values=ref.known_values)) == NOT_APPLICABLE  # presents no item
    # partial knowledge: a value is judged only when the item's knowledge has one of its relations
    partial = ReplyReference(item_values=frozenset({"补水"}), has_items=True, item_relations=frozenset({"功效"}),
                             known_values=frozenset({"补水", "美白", "兰蔻", "雅诗兰黛"}),
                             value_relations={"补水": frozenset({"功效"}), "美白": frozenset({"功效"}),
                                              "兰蔻": frozenset({"品牌"}), "雅诗兰黛": frozenset({"品牌"})})
    r = check("兰蔻这款补水，也能美白", partial)
    assert (r.hits, r.total) == (1.0, 2.0)  # 补水 true, 美白 false, 兰蔻 not judged (no 品牌 known)


@pytest.mark.parametrize("reply, repeated", [
    ("亲亲，请问是混合性，还是混合性呢", True),  # an option repeated
    ("品牌：她她她她她", True),  # a character over and over
    ("这款适合适合您", True),  # a phrase twice back to back
    ("这款冰箱二级能效，更省电，省电、变频都好", True),
    ("亲亲，请问是混合性还是干性呢", False),
    ("是黑色还是白色呢", False),
    ("亲亲您好，看看这款", False),  # '亲亲' is a form of address, not a repetition
    ("预算3000以内", False),  # digits are not checked
])
def test_repetition_by_hand(reply, repeated):
    assert get_metric("repetition")(reply).hits == float(repeated)


def test_reply_checks_aggregate_over_the_samples_they_apply_to():
    from uneed.metrics import ReplyReference

    refs = [_ask_ref(), _ask_ref(), ReplyReference(item_values=frozenset({"补水"}), has_items=True,
                                                  known_values=frozenset({"补水", "美白"}))]
    replies = ["请问是什么肤质呢", "请问预算多少呢", "这款补水美白"]
    out = evaluate("respond_checks", replies, refs, ["美妆", "美妆", "美妆"])["all"]
    assert out["ask-names-attribute"] == pytest.approx(0.5) and out["ask-names-attribute/n"] == 2
    assert out["knowledge-true"] == pytest.approx(0.5) and out["knowledge-true/n"] == 2  # 补水 true, 美白 not
    assert out["repetition"] == 0.0 and out["repetition/n"] == 3


@pytest.fixture(scope="module")
def tiny_corpus(tiny_corpus_dir):
    from uneed.corpus import load_corpus

    return load_corpus(tiny_corpus_dir)


def test_reply_references_from_samples_and_items(tiny_corpus):
    """Built from the corpus alone: the gold replies name what they ask far more often than a fixed
    reply does, and a reply copying an item's knowledge states only true values."""
    from uneed.replies import evaluate_replies
    from uneed.tasks import build_samples

    train = build_samples(tiny_corpus, "train", ["respond"])
    gold = evaluate_replies(train, [s.target for s in train], tiny_corpus.items, train)["all"]
    fixed = evaluate_replies(train, ["好的亲" for _ in train], tiny_corpus.items, train)["all"]
    # the corpus's staff often ask without naming the attribute or a value ('平时化妆多吗'): 0.67 on tiny
    assert gold["ask-names-attribute"] > 0.6 > 0.2 > fixed["ask-names-attribute"]
    # item knowledge is partial, the staff's explanations are not: judged only where the knowledge can
    # tell, the shop's own replies are mostly true (0.87 on tiny; 0.49 when every stated value was judged)
    assert gold["knowledge-true"] > 0.8
    with_items = [s for s in train if s.items and s.items[0] in tiny_corpus.items]
    copied = ["这款" + "，".join(v for rel, vs in tiny_corpus.items[s.items[0]].knowledge.items() for v in vs
                                if rel != "一级类目") for s in with_items]
    assert evaluate_replies(with_items, copied, tiny_corpus.items, train)["all"]["knowledge-true"] == 1.0


def test_faithful_reply_cuts_the_clauses_that_state_untrue_values_by_hand():
    from uneed.metrics import ReplyReference
    from uneed.replies import faithful_reply

    ref = ReplyReference(item_values=frozenset({"6GB", "5000万", "绿色"}), has_items=True,
                         known_values=frozenset({"6GB", "8GB", "5000万", "绿色", "流畅", "拍照"}))
    reply = "这一款，6GB运行内存，玩游戏也流畅，5000万像素，拍照细节丰富；绿色很显气质"
    assert faithful_reply(reply, ref) == "这一款，6GB运行内存，5000万像素；绿色很显气质"
    assert faithful_reply("这款8GB运行内存，玩游戏也流畅", ref) == ""  # nothing true left
    assert faithful_reply("这款6GB运行内存，绿色可选，8GB也有", ref) == "这款6GB运行内存，绿色可选"  # no comma left hanging
    kept = "有问题随时找我"
    assert faithful_reply(kept, ref) is kept
    assert faithful_reply(reply, ReplyReference(known_values=ref.known_values)) == reply  # presents no item: no check
    # an item whose knowledge has nothing a reply could state (its price range '中' only): every stated value
    # is cut, whatever its relation, and what is said of no value stays
    bare = ReplyReference(item_values=frozenset({"中"}), has_items=True, known_values=ref.known_values | {"中"},
                          value_relations={"流畅": frozenset({"功能需求"})}, item_relations=frozenset({"价格区间"}))
    assert faithful_reply("这一款，6GB运行内存，玩游戏也流畅，品质有保障", bare) == "这一款，品质有保障"
    judged_only = dataclasses.replace(bare, item_values=frozenset({"中", "6GB"}))  # one stateable value
    assert faithful_reply("这一款，6GB运行内存，玩游戏也流畅，品质有保障", judged_only) == "这一款，6GB运行内存，玩游戏也流畅，品质有保障"


def test_faithful_targets_leave_only_founded_values_in_the_train_replies(tiny_corpus_dir):
    from uneed.corpus import load_corpus
    from uneed.metrics import untrue_values
    from uneed.replies import faithful_targets, reply_references, unfounded_values
    from uneed.tasks import build_samples

    corpus = load_corpus(tiny_corpus_dir)
    samples = build_samples(corpus, "train")
    before = reply_references(samples, corpus.items)
    unfounded = sum(len(unfounded_values(str(s.target), r)) for s, r in zip(samples, before))
    untrue = sum(len(untrue_values(str(s.target), r)) for s, r in zip(samples, before))
    out, stats = faithful_targets(samples, corpus.items)
    assert unfounded > untrue > 0 and stats["unfounded_values"] == unfounded and stats["cut"] > 0
    assert len(out) == len(samples) - stats["dropped"]
    assert stats["replies"] == sum(s.task == "respond" for s in samples)
    after = reply_references(out, corpus.items)
    assert not any(unfounded_values(str(s.target), r) for s, r in zip(out, after))
    by_key = {s.key: s for s in samples}
    for s in out:
        old = by_key[s.key]
        if s.target != old.target:  # only whole clauses go: what is left is shorter and made of the old words
            assert s.task == "respond" and len(s.target) < len(old.target)
            assert all(clause in old.target for clause in s.target.replace("；", "，").split("，"))
        else:
            assert s is old
