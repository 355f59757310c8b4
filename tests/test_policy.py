"""Turn closing reads turns, not substrings: which user turns after a recommendation accept the item
(the conversation closes on it) and which turn it down (it is never recommended again)."""
import pytest

from agent.policy import PolicyConfig, accepts_recommendation, decide, is_acceptance, is_rejection, rejected_items

A, R, N = "accept", "reject", "neither"
TURNS = [
    # the cases
    ("美妆行业", "谢谢，能再便宜点吗", N),
    ("服装行业", "要流行一点的款式", N),
    ("手机行业", "运行内存要大一点的", N),
    ("鞋类行业", "可以的话便宜点", N),
    ("服装行业", "行李箱有吗", N),
    ("服装行业", "有没有这款的红色", N),
    ("美妆行业", "我再看看", N),
    # acceptances
    ("美妆行业", "好的，就这款吧", A),
    ("美妆行业", "好的谢谢", A),
    ("手机行业", "行，就这个吧", A),
    ("手机行业", "可以的，我拍了", A),
    ("服装行业", "好的亲", A),
    ("服装行业", "好的 /:801", A),
    ("鞋类行业", "那就要这款了", A),
    ("鞋类行业", "这个可以", A),
    ("大家电行业", "这款不错，下单了", A),
    ("大家电行业", "嗯嗯好的，谢谢亲", A),
    ("大家电行业", "OK", A),
    ("美妆行业", "拍了拍了", A),
    # not acceptances: questions, leaving, new needs, neutral
    ("美妆行业", "好的，我看看", N),
    ("美妆行业", "有优惠吗", N),
    ("手机行业", "什么时候发货呢", N),
    ("手机行业", "可以分期吗", N),
    ("手机行业", "好的，我考虑一下", N),
    ("服装行业", "/:^_^", N),
    ("服装行业", "好的，要宽松一点的", N),
    ("鞋类行业", "行吗？", N),
    ("鞋类行业", "好看吗", N),
    ("鞋类行业", "嗯嗯，我看一下", N),
    ("大家电行业", "这款噪音大吗", N),
    ("大家电行业", "可以的话要变频的", N),
    ("大家电行业", "好的，容量要大一点", N),
    # variant questions: not a rejection of the item
    ("美妆行业", "这款有没有小样", N),
    ("服装行业", "有别的颜色吗", N),
    ("鞋类行业", "这双有没有大码", N),
    ("手机行业", "有没有这个的256G版本", N),
    ("服装行业", "这件有特别的设计吗", N),
    ("大家电行业", "这台不太贵吧", N),
    # rejections
    ("美妆行业", "这个太贵了", R),
    ("美妆行业", "有点贵了，有没有便宜点的", R),
    ("手机行业", "不喜欢这个颜色，换一款吧", R),
    ("手机行业", "还有其他款吗", R),
    ("服装行业", "有没有别的推荐", R),
    ("服装行业", "不合适，算了", R),
    ("鞋类行业", "超预算了", R),
    ("鞋类行业", "还有别的吗", R),
    ("大家电行业", "不要这款，太大了", R),
    ("大家电行业", "再推荐一款看看，这个不行", R),
    ("大家电行业", "好的，不过有没有别的款", R),
]


def test_the_table_covers_the_five_categories():
    assert len(TURNS) >= 40
    assert {c for c, _, _ in TURNS} == {"美妆行业", "手机行业", "服装行业", "鞋类行业", "大家电行业"}


@pytest.mark.parametrize("category,text,expected", TURNS, ids=[t for _, t, _ in TURNS])
def test_a_turn_after_a_recommendation(category, text, expected):
    assert (is_acceptance(text), is_rejection(text)) == (expected == A, expected == R), text
    state = {"category": category, "transcript": [
        {"speaker": "用户", "text": "想买一款", "tags": []},
        {"speaker": "客服", "text": "【商品 111】这款不错", "items": ["111"]},
        {"speaker": "用户", "text": text, "tags": []}]}
    assert accepts_recommendation(state) == (expected == A)
    assert decide(state, PolicyConfig(), []) == ("close" if expected == A else "ask")
    assert rejected_items(state, text) == (["111"] if expected == R else [])


def test_a_new_need_in_an_accepting_turn_is_no_acceptance():
    state = {"transcript": [{"speaker": "客服", "text": "【商品 111】", "items": ["111"]},
                            {"speaker": "用户", "text": "好的", "tags": []}]}
    assert decide(state, PolicyConfig(), []) == "close"
    assert decide(state, PolicyConfig(), ["颜色：红色"]) != "close"
    assert not accepts_recommendation(state, ["颜色：红色"])
    assert accepts_recommendation(state, ["颜色："])  # an attribute without value is no need
