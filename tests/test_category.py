"""Recommendations stay in the conversation's category: the CRS's catalog search, the recommend tools of
both graphs and the CRS policy filter by the thread's category and put a known seller's items first."""
import pytest

from agent.assistant import Assistant, memory_checkpointer
from agent.policy import PolicyConfig
from tools.dialogue import turn_record
from uneed.corpus import Corpus, Item, load_corpus
from uneed.errors import PresalesError

A, B = "手机行业", "美妆行业"


def two_category_corpus() -> Corpus:
    """Seller s1 (phones) hosts a dialogue recommending p1; p2 shares p1's 一级类目; p3 is s1's;
    seller s2 (beauty) hosts a dialogue recommending b1; b2 is s2's; x1 has an unknown code and seller."""
    from uneed.schema import Dialogue

    def item(i, seller, code):
        return Item(i, seller, {"一级类目": [code]})

    items = {i.item_id: i for i in [item("p1", "s1", "10"), item("p2", "s9", "10"), item("p3", "s1", "11"),
                                    item("b1", "s2", "20"), item("b2", "s2", "21"), item("x1", "s7", "99")]}

    def dialogue(sid, domain, seller, rec):
        turns = [{"seq_no": 1, "time": "2022-01-01 10:00:00", "sender_type": "用户", "send_content": "想买",
                  "act_tag": "用户需求", "attributes": []},
                 {"seq_no": 2, "time": "2022-01-01 10:01:00", "sender_type": "客服", "send_content": "仅发送商品链接",
                  "act_tag": "系统推荐", "attributes": [], "rec_item_id": [rec]}]
        return Dialogue.model_validate({"sid": sid, "domain": domain, "sellerid": seller, "userid": "u", "ds": "20220101",
                                        "dialogue": turns})

    return Corpus({"train": [dialogue("d1", A, "s1", "p1"), dialogue("d2", B, "s2", "b1")]}, items, {})


def test_item_domains_are_read_off_the_dialogues():
    assert two_category_corpus().item_domains() == {"p1": A, "p2": A, "p3": A, "b1": B, "b2": B}


@pytest.fixture(scope="module")
def crs(agent_run):
    """The run's CRS over its real catalog, its items split into two categories and two sellers."""
    from crs.inference import CRS

    model = CRS.load(agent_run / "crs", device="cpu")
    ids = list(model.catalog.ids)
    domains = {i: (A if n % 2 == 0 else B) for n, i in enumerate(ids)}
    sellers = {i: ("shop-1" if n % 4 == 0 else "shop-2") for n, i in enumerate(ids)}
    model.set_item_groups(domains, sellers)
    return model


def test_catalog_search_stays_in_the_category(crs):
    from uneed.tasks import Utterance

    ctx = [Utterance("用户", "想买一款", "")]
    unfiltered = crs.recommend([ctx], k=len(crs.catalog))[0]
    assert {crs.item_domains[s.item_id] for s in unfiltered} == {A, B}
    for domain in (A, B):
        got = crs.recommend([ctx], k=len(crs.catalog), domains=[domain])[0]
        assert got and {crs.item_domains[s.item_id] for s in got} == {domain}
        assert len(got) == sum(d == domain for d in crs.item_domains.values())
        # the unfiltered ranking restricted to the category (near-ties deep in the list may swap)
        same = [s.item_id for s in unfiltered if crs.item_domains[s.item_id] == domain]
        assert [s.item_id for s in got][:10] == same[:10] and sorted(s.item_id for s in got) == sorted(same)
        assert all(a.score >= b.score - 1e-5 for a, b in zip(got, got[1:]))
    top = crs.recommend([ctx], k=5, domains=[A], exclude=[[s.item_id for s in got[:2]]])[0]
    assert not {s.item_id for s in top} & {s.item_id for s in got[:2]}
    cands = [s.item_id for s in unfiltered[:20]]
    ranked = crs.recommend([ctx], candidates=[cands], k=None, domains=[B])[0]
    as_candidates = crs.recommend([ctx], candidates=[cands], k=None)[0]  # candidate lists are re-ranked
    assert [s.item_id for s in ranked] == [s.item_id for s in as_candidates if crs.item_domains[s.item_id] == B]


def test_a_known_sellers_items_come_first(crs):
    from uneed.tasks import Utterance

    ctx = [Utterance("用户", "想买一款", "")]
    own = sum(1 for i, d in crs.item_domains.items() if d == A and crs.item_sellers[i] == "shop-1")
    got = crs.recommend([ctx], k=own + 3, domains=[A], sellers=["shop-1"])[0]
    assert [crs.item_sellers[s.item_id] for s in got] == ["shop-1"] * own + ["shop-2"] * 3
    assert all(crs.item_domains[s.item_id] == A for s in got)


def test_the_recommend_tool_and_the_crs_policy_filter_by_the_thread(crs, tiny_corpus_dir):
    from agent.crs_policy import CRSPolicy
    from tools.crs_tools import make_crs_tools

    corpus = load_corpus(tiny_corpus_dir)
    tools = {t.name: t for t in make_crs_tools(crs, corpus.items)}
    for domain in (A, B):
        state = {"category": domain, "transcript": [turn_record("用户", "想买一款")], "rejected": [],
                 "recommended": [], "behaviours": [], "needs": {}, "asked": []}
        msg = tools["recommend_items"].invoke({"name": "recommend_items", "args": {"k": 10, "state": state},
                                               "id": "c1", "type": "tool_call"})
        assert {crs.item_domains[r["item_id"]] for r in msg.artifact["items"]} == {domain}
        update = CRSPolicy(crs, corpus.items, PolicyConfig()).recommend(state)
        assert update["recommended"] and crs.item_domains[update["recommended"][0]] == domain


@pytest.mark.parametrize("kind", ["crs", "llm"])
def test_both_graphs_recommend_within_the_conversation_category(agent_run, kind):
    """Over the real five-category catalog: every item either graph recommends is of the thread's category."""
    assistant = Assistant.from_run(agent_run, kind, checkpointer=memory_checkpointer(),
                                   policy=PolicyConfig(min_needs=1, max_questions=1))
    domains = assistant.corpus.item_domains()
    for n, category in enumerate(["服装行业", "手机行业", "大家电行业"]):
        thread = f"{kind}-{n}"
        for text in ("想买一款", "随便推荐一款吧", "还有别的吗", "再推荐一款看看"):
            assistant.send(text, thread, category)
        recommended = assistant.state(thread)["recommended"]
        assert recommended, (kind, category)
        assert {domains.get(i) for i in recommended} == {category}, (kind, category, recommended)


def test_recommendations_keep_to_the_kind_of_item_the_shopper_named(crs, tiny_corpus_dir):
    """leaves=[names]: no items of a leaf category other than the named ones (equal, or one contains the
    other, two characters or more); items of no known leaf stay; a kind the catalog lacks leaves the
    ranking as it was; the tools and the CRS policy read the names off the thread's 品类 needs."""
    from agent.crs_policy import CRSPolicy
    from tools.crs_tools import make_crs_tools, recommend_scope
    from uneed.tasks import Utterance

    ids = list(crs.catalog.ids)
    leaves = {i: ("电热水器" if n % 3 == 0 else "冰箱" if n % 3 == 1 else "") for n, i in enumerate(ids)}
    crs.set_item_leaves(leaves)
    try:
        ctx = [Utterance("用户", "想买一款", "")]
        everything = [s.item_id for s in crs.recommend([ctx], k=len(ids))[0]]
        heaters = crs.recommend([ctx], k=len(ids), leaves=[["热水器"]])[0]  # contained in 电热水器
        # the named kind and the items of no known kind, never another kind
        assert sorted(s.item_id for s in heaters) == sorted(i for i in ids if leaves[i] in ("电热水器", ""))
        assert any(leaves[s.item_id] == "电热水器" for s in heaters)
        assert all(a.score >= b.score - 1e-5 for a, b in zip(heaters, heaters[1:]))
        fridges_of_a = crs.recommend([ctx], k=len(ids), domains=[A], leaves=[["冰箱"]])[0]
        assert fridges_of_a and {crs.item_domains[s.item_id] for s in fridges_of_a} == {A}
        assert {leaves[s.item_id] for s in fridges_of_a} == {"冰箱", ""}
        for names in (["空调"], ["冰"], []):  # unknown, one character, none
            assert [s.item_id for s in crs.recommend([ctx], k=20, leaves=[names])[0]] == everything[:20]
        with pytest.raises(PresalesError, match="leaves has 2 entries for 1 contexts"):
            crs.recommend([ctx], k=5, leaves=[["冰箱"], ["热水器"]])

        corpus = load_corpus(tiny_corpus_dir)
        state = {"category": A, "transcript": [turn_record("用户", "想买个热水器")], "rejected": [],
                 "recommended": [], "behaviours": [], "needs": {"品类": ["热水器"], "价位": ["800左右"]}, "asked": []}
        assert recommend_scope(state)["leaves"] == [["热水器"]]
        tools = {t.name: t for t in make_crs_tools(crs, corpus.items)}
        msg = tools["recommend_items"].invoke({"name": "recommend_items", "args": {"k": 10, "state": state},
                                               "id": "c1", "type": "tool_call"})
        assert msg.artifact["items"] and "冰箱" not in {leaves[r["item_id"]] for r in msg.artifact["items"]}
        update = CRSPolicy(crs, corpus.items, PolicyConfig()).recommend(state)
        assert update["recommended"] and leaves[update["recommended"][0]] != "冰箱"
    finally:
        crs.set_item_leaves({})
