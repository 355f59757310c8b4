"""The embedded corpus generator (tiny scale only: fast)."""
from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from pathlib import Path

import pytest

from uneed.corpus import load_corpus
from uneed.schema import DOMAINS, SPLITS, STAFF_RECOMMEND
from uneed.synth import SCALES, Lexicon, Shopper, default_lexicon, synthesize

FILES = [f"{s}_dialogue.json" for s in SPLITS] + ["item_kg.txt", "user_action.txt"]
TURN_KEYS = {"seq_no", "time", "sender_type", "send_content", "act_tag", "attributes", "rec_item_id",
             "rec_item_info", "rec_item_candidates"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny0")
    counts = synthesize(out, "tiny", seed=0, progress=False)
    assert counts["dialogues"] == 60
    return out


@pytest.fixture(scope="module")
def raw(tiny):
    return {s: json.loads((tiny / f"{s}_dialogue.json").read_text(encoding="utf-8")) for s in SPLITS}


def test_loads_without_errors(tiny):
    corpus = load_corpus(tiny)
    assert not corpus.report.errors
    assert not corpus.report.warnings, corpus.report.summary()
    assert sum(len(corpus.split(s)) for s in SPLITS) == 60
    assert sorted(corpus.domains) == sorted(DOMAINS)


def test_release_format(tiny, raw):
    text = (tiny / "train_dialogue.json").read_text(encoding="utf-8")
    assert text.startswith("[\n    {\n        \"domain\"")  # indent 4
    assert "\\u" not in text  # ensure_ascii=False
    for split, dialogues in raw.items():
        for d in dialogues:
            assert set(d) == {"domain", "sid", "sellerid", "userid", "ds", "dialogue"}
            assert d["sellerid"].isdigit() and d["userid"].isdigit() and len(d["sid"]) == 32
            assert 4 <= len(d["dialogue"]) <= 20
            times = [t["time"] for t in d["dialogue"]]
            assert times == sorted(times) and times[0][:10].replace("-", "") == d["ds"]
            assert [t["seq_no"] for t in d["dialogue"]] == list(range(1, len(d["dialogue"]) + 1))
            for t in d["dialogue"]:
                assert set(t) == TURN_KEYS
    with (tiny / "item_kg.txt").open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["item_id_encrypt", "seller_id_encrypt", "relation_name", "value"]
    assert all(r[0].isdigit() and 11 <= len(r[0]) <= 12 for r in rows[1:])


def test_per_domain_split_sizes(raw):
    per = defaultdict(lambda: defaultdict(int))
    for split, dialogues in raw.items():
        for d in dialogues:
            per[d["domain"]][split] += 1
    assert set(per) == set(DOMAINS)
    for domain, counts in per.items():
        assert counts["train"] == 10 and counts["valid"] == 1 and counts["test"] == 1, (domain, counts)


def test_spans_exact(raw):
    n = 0
    for dialogues in raw.values():
        for d in dialogues:
            for t in d["dialogue"]:
                for a in t["attributes"]:
                    if a["value"] == "":
                        assert (a["start"], a["exclusive_end"]) == (-1, -1)
                    else:
                        assert t["send_content"][a["start"]:a["exclusive_end"]] == a["value"]
                        n += 1
    assert n > 300


def test_candidates(tiny, raw):
    items = load_corpus(tiny).items
    n = 0
    for dialogues in raw.values():
        for d in dialogues:
            for t in d["dialogue"]:
                assert len(t["rec_item_candidates"]) == len(t["rec_item_id"]) == len(t["rec_item_info"])
                if t["rec_item_id"]:
                    assert t["act_tag"] == STAFF_RECOMMEND
                for gold, info, cands in zip(t["rec_item_id"], t["rec_item_info"], t["rec_item_candidates"]):
                    n += 1
                    assert len(cands) == 20 and len(set(cands)) == 20 and gold in cands
                    assert info == f"{gold}@{items[gold].category}"
                    assert all(c in items for c in cands)
                    same_seller = sum(items[c].seller_id == d["sellerid"] for c in cands)
                    assert same_seller >= 10
    assert n >= 60


def test_deterministic(tiny, tmp_path):
    again = tmp_path / "again"
    other = tmp_path / "other"
    synthesize(again, "tiny", seed=0, progress=False)
    synthesize(other, "tiny", seed=1, progress=False)
    for name in FILES:
        assert (tiny / name).read_bytes() == (again / name).read_bytes(), name
    assert (tiny / "train_dialogue.json").read_bytes() != (other / "train_dialogue.json").read_bytes()
    assert (tiny / "item_kg.txt").read_bytes() != (other / "item_kg.txt").read_bytes()


def test_held_out_forms(raw):
    lex = default_lexicon()
    seen = defaultdict(int)
    for split, dialogues in raw.items():
        for d in dialogues:
            for t in d["dialogue"]:
                for a in t["attributes"]:
                    if a["value"] and lex.is_held_out(d["domain"], a["key"], a["value"]):
                        seen[split] += 1
    assert seen["train"] == 0
    assert seen["valid"] + seen["test"] > 0


def test_lexicon_held_out_rate_and_forms():
    lex = Lexicon()
    total = held = 0
    for domain in lex.domains:
        assert domain in DOMAINS
        assert len(lex.attributes(domain)) >= 8
        for attr in lex.attributes(domain):
            for value in lex.values(domain, attr):
                forms = lex.forms(domain, attr, value)
                train = lex.forms(domain, attr, value, include_held_out=False)
                assert train and train[0] == forms[0]  # never the only / first form
                total += len(forms)
                held += len(forms) - len(train)
                for f in lex.held_out_forms(domain, attr, value):
                    assert lex.is_held_out(domain, attr, f)
                    assert lex.canonical(domain, attr, f) == (value, False)
    assert 0.18 < held / total < 0.32
    assert "十公斤" in lex.forms("大家电行业", "洗涤重量", "10公斤")
    assert "四十二码" in lex.forms("鞋类行业", "鞋码", "42")
    assert "不要烘干" in lex.negated_forms("大家电行业", "功能需求", "烘干")
    assert ("功能需求", "烘干", True) in lex.lookup("大家电行业", "不要烘干")


def test_behaviours_signal(tiny, raw):
    corpus = load_corpus(tiny)
    items = corpus.items
    leaf = {i: (it.knowledge.get("叶子类目") or [""])[0] for i, it in items.items()}
    related = total = chance = target_hits = users = 0
    catalog = list(items)
    for dialogues in raw.values():
        for d in dialogues:
            recs = [t for t in d["dialogue"] if t["rec_item_id"]]
            target = recs[-1]["rec_item_id"][-1] if len(recs[-1]["rec_item_id"]) == 1 else None
            if target is None:
                continue
            acts = corpus.user_behaviours(d["userid"], before=recs[0]["time"], limit=10_000)
            all_acts = corpus.behaviours[d["userid"]][1]
            assert acts and len(acts) == len(all_acts)  # everything precedes the first recommendation
            users += 1
            target_hits += target in acts
            same = [a for a in acts if items[a].seller_id == d["sellerid"]]
            related += len(same)
            total += len(acts)
            share = sum(items[c].seller_id == d["sellerid"] for c in catalog) / len(catalog)
            chance += share * len(acts)
    assert users >= 40
    assert related > 1.5 * chance
    # 60% of users look at the target before it is recommended, others may draw it by chance: at tiny
    # scale (60 users) seeds 0-3 give 0.87-0.95, so the bound only says that not every user did
    assert 0.3 < target_hits / users <= 0.95
    assert 20 < total / users < 70
    assert leaf  # leaves recorded for some items


def test_shopper_simulator():
    lex = default_lexicon()
    knowledge = {"一级类目": ["50022703"], "价格区间": ["中"], "品牌": ["小天鹅"], "洗衣机类型": ["滚筒"],
                 "洗涤重量": ["10公斤"], "功能需求": ["变频", "除菌"], "叶子类目": ["洗衣机"]}
    for seed in range(20):
        s = Shopper("大家电行业", knowledge, lex, random.Random(seed), allow_held_out=False, noise=0.0)
        for text, attrs in [s.opening(), s.answer(["洗衣机类型"], {"洗衣机类型": ["波轮", "滚筒"]}),
                            s.answer(["洗涤重量", "品牌"]), s.answer(["空调匹数"]),
                            s.feedback({"价格区间": ["高"], "洗衣机类型": ["波轮"], "叶子类目": ["洗衣机"]})]:
            assert text
            for a in attrs:
                assert text[a["start"]:a["exclusive_end"]] == a["value"]
                assert not lex.is_held_out("大家电行业", a["key"], a["value"])
                got = lex.canonical("大家电行业", a["key"], a["value"])
                assert got is not None
                value, negated = got
                if a["key"] == "洗衣机类型":
                    assert value == "滚筒"
                if a["key"] == "洗涤重量":
                    assert value == "10公斤"
        # the target itself: no complaint; feedback still says what else is wanted (the feedback of
        # real users mostly states a need), and every value it names is one the target has
        text, attrs = s.feedback(knowledge)
        for a in attrs:
            value, negated = lex.canonical("大家电行业", a["key"], a["value"])
            relation = lex.kg_relation("大家电行业", a["key"])
            assert negated or value in knowledge.get(relation, []) or a["key"] == "品类", (text, a)


def test_scales_declared():
    assert set(SCALES) == {"tiny", "small", "full"}
    full = SCALES["full"]
    assert full.dialogues == {"美妆行业": 1662, "手机行业": 1513, "服装行业": 1135, "鞋类行业": 1748, "大家电行业": 1640}
    assert full.items == 68_954
    assert all(n == 150 for n in SCALES["small"].dialogues.values())
    assert all(n == 12 for n in SCALES["tiny"].dialogues.values())


def test_act_structure(raw):
    """1-3 back-to-back recommendations of one item each, 2-7 items, explanations only after a
    recommendation, every dialogue ending on a staff turn."""
    runs = []
    for dialogues in raw.values():
        for d in dialogues:
            turns = d["dialogue"]
            assert turns[-1]["sender_type"] == "客服", d["sid"]
            items = [i for t in turns for i in t["rec_item_id"]]
            assert 2 <= len(items) <= 7 and len(set(items)) == len(items), d["sid"]
            seen_rec, run = False, 0
            for t in turns + [{"act_tag": "", "rec_item_id": []}]:
                if t["act_tag"] == STAFF_RECOMMEND:
                    assert len(t["rec_item_id"]) == 1
                    seen_rec, run = True, run + 1
                    continue
                if run:
                    runs.append(run)
                run = 0
                if t["act_tag"] == "系统解释":
                    assert seen_rec, d["sid"]
    assert max(runs) <= 3 and any(r >= 2 for r in runs)


def test_annotation_conventions(raw):
    """Values are the core an annotator marks; gender is 人群 in Shoes; no age or price menus."""
    lex = default_lexicon()
    for split, dialogues in raw.items():
        for d in dialogues:
            for t in d["dialogue"]:
                for a in t["attributes"]:
                    if a["value"]:
                        assert a["value"] not in ("男士", "女士", "男生", "女生", "男款", "女款", "普通洗衣机"), a
                        # (in train a held-out core is not used: the whole surface is the value)
                        assert lex.core(d["domain"], a["key"], a["value"], split != "train")[1] == a["value"], a
                    if d["domain"] == "鞋类行业":
                        assert a["key"] != "性别"
                    if t["act_tag"] == "系统提问" and a["key"] in ("年龄", "价位", "人群", "品牌"):
                        assert a["value"] == "", (t["send_content"], a)
    assert lex.core("大家电行业", "功能需求", "不要烘干功能") == (0, "不要烘干")
    assert lex.core("大家电行业", "品类", "普通洗衣机") == (2, "洗衣机")
    assert lex.core("美妆行业", "肤质", "敏感肌") == (0, "敏感肌")
    assert [o[0] for o in lex.lookup("大家电行业", "性价比高")] == ["款式"]
    assert [o[0] for o in lex.lookup("美妆行业", "容易过敏")] == ["肌肤问题"]
    # open values: amounts x modifiers, half sizes, memory pairs, bare ages
    assert "3000之内" in lex.forms("手机行业", "价位", "中")
    assert "41.5" in lex.forms("鞋类行业", "鞋码", "41.5")
    assert "12+256" in lex.forms("手机行业", "内存", "256GB")
    assert "24" in lex.forms("美妆行业", "年龄", "18-24岁")
    assert ("人群", "青年", False) in lex.lookup("服装行业", "儿子")


def test_catalogue_knowledge_and_prices(tiny, raw):
    """Most items record only a price band; recommended items more often have more; prices follow
    the leaf (a 老人机 is never in the top band)."""
    corpus = load_corpus(tiny)
    bare = {i for i, it in corpus.items.items() if not set(it.knowledge) - {"一级类目", "价格区间"}}
    assert len(bare) / len(corpus.items) > 0.6
    recommended = [i for ds in raw.values() for d in ds for t in d["dialogue"] for i in t["rec_item_id"]]
    assert sum(i in bare for i in recommended) / len(recommended) < len(bare) / len(corpus.items)
    bands = [it.knowledge.get("价格区间", [""])[0] for it in corpus.items.values()
             if it.knowledge.get("叶子类目") == ["老人机"]]
    assert "高" not in bands


def test_every_leaf_has_a_hosting_seller_at_small():
    """At `small` every leaf category of every domain is the main leaf of a seller with dialogues."""
    from uneed.synth.catalog import IdFactory, build_catalog
    from uneed.synth.generate import hosting_sellers

    lex = default_lexicon()
    cfg = SCALES["small"]
    hosting = hosting_sellers(lex, cfg)
    items = {d: cfg.items // len(cfg.dialogues) for d in cfg.dialogues}
    sellers = build_catalog(lex, items, hosting, cfg.hosting_share, IdFactory(random.Random(0)), random.Random(0))
    for domain, ss in sellers.items():
        hosted = {leaf for s in ss if s.hosting for leaf in s.leaves}
        assert hosted == set(lex.spec(domain).leaves), domain
