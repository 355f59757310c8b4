import json

import pytest

from uneed.corpus import load_corpus
from uneed.tasks import (SPECIAL_TOKENS, build_samples, cap_candidates, crs_example, llm_record, parse_keys,
                         parse_tags, read_predictions, write_predictions, PredictionFileError)
from uneed.tasks.crs_format import ReplyLayout, render_history
from uneed.tasks.text import format_tags, group_pairs


@pytest.fixture(scope="module")
def corpus(samples_dir):
    return load_corpus(samples_dir)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_understanding_records_equal_the_authors(corpus, samples_dir, split):
    authors = json.loads((samples_dir / "llm-instruction-samples" / f"{split}_sample.json").read_text("utf-8"))
    ours = [llm_record(s, corpus.items) for s in build_samples(corpus, split, ["understand"])]
    assert len(ours) >= len(authors)
    for a, o in zip(authors, ours):
        assert o["instruction"] == a["instruction"]
        assert o["input"] == a["input_llm"]
        assert o["output"] == a["output_llm"] == a["label"]


def test_sample_positions(corpus):
    samples = build_samples(corpus, "test")
    by_task = {}
    for s in samples:
        by_task.setdefault(s.task, []).append(s)
    # 6 annotated turns, 1 question, 1 recommended item, 2 staff turns that say more than a link
    assert [len(by_task[t]) for t in ("understand", "elicit", "recommend", "respond")] == [6, 1, 1, 2]
    rec = by_task["recommend"][0]
    assert rec.target == "577681663455" and len(rec.candidates) == 20
    assert rec.needs[:2] == [("性别", "男"), ("品类", "洗面奶")]
    explain = by_task["respond"][1]
    assert explain.current.act_tag == "系统解释" and explain.items == ["577681663455"]
    assert by_task["elicit"][0].target == ["年龄", "肤质"]


def test_llm_records_of_the_other_tasks(corpus):
    samples = {s.task: s for s in build_samples(corpus, "test")}
    elicit = llm_record(samples["elicit"], corpus.items)
    assert elicit["instruction"].startswith("依据美妆行业售前对话，选择一系列的属性")
    assert elicit["input"] == "售前对话：[Round 0]\n用户：男士洗面奶水乳有没有套装" and elicit["output"] == "年龄；肤质"
    rec = llm_record(samples["recommend"], corpus.items)
    assert "从候选商品A-T中" in rec["instruction"]
    assert rec["input"].count("[SEP]") == 19 and "各候选商品对应的属性和属性值：A的" in rec["input"]
    assert rec["output"] == "ABCDEFGHIJKLMNOPQRST"[rec["candidates"].index("577681663455")]
    respond = llm_record(samples["respond"], corpus.items)
    assert "已获取的用户需求偏好信息：性别：男、品类：洗面奶、水乳、套装、年龄：24、肤质：偏干、肌肤问题：出油" in respond["input"]
    assert respond["output"].startswith("龙血能量系列")


def test_crs_assisting_llm_adds_instruction_and_ranking(corpus):
    rec = next(s for s in build_samples(corpus, "test", ["recommend"]))
    ranking = list(reversed(rec.candidates))
    record = llm_record(rec, corpus.items, crs_prediction=ranking)
    assert record["instruction"].endswith("完成任务时需要考虑对话推荐系统（CRS）的预测结果。")
    assert record["input"].endswith("候选商品按对话推荐系统的排序列出，A是它的首选")
    assert record["candidates"] == ranking  # lettered in the CRS's order: A is its first choice
    assert record["output"] == "ABCDEFGHIJKLMNOPQRST"[ranking.index(rec.target)]
    first_two = llm_record(rec, corpus.items, crs_prediction=ranking[-1:] + ranking[:1])
    assert first_two["candidates"][:2] == [ranking[-1], ranking[0]]  # unranked ones keep their order after
    assert first_two["candidates"][2:] == [c for c in rec.candidates if c not in first_two["candidates"][:2]]
    und = build_samples(corpus, "test", ["understand"])[0]
    assert llm_record(und, corpus.items, "性别：男")["input"].endswith("对话推荐系统识别的属性和属性值：性别：男")


def test_crs_sequences(corpus):
    samples = build_samples(corpus, "test")
    und = [s for s in samples if s.task == "understand"][2]
    ex = crs_example(und, corpus.items)
    assert ex.source == ("[user]男士洗面奶水乳有没有套装[understand]性别：男；品类：洗面奶；品类：水乳；品类：套装"
                         "[system]请问您的芳龄多大，您的肤质是怎样的偏油，偏干，这边为您推荐适合您的产品呢~"
                         "[understand]年龄：；肤质：偏油；肤质：偏干[user]24 Identify attributes and values:")
    assert ex.target == "年龄：24"
    elicit = crs_example(next(s for s in samples if s.task == "elicit"), corpus.items, llm_prediction=["年龄"])
    assert elicit.source.endswith("[LLM]年龄 Select an attribute to ask:") and elicit.target == "年龄；肤质"
    rec = crs_example(next(s for s in samples if s.task == "recommend"), corpus.items, llm_prediction=["x1"])
    assert rec.gold_item == "577681663455" and rec.llm_item == "x1" and len(rec.candidates) == 20
    assert rec.source.endswith("[user]鼻子出油[understand]肌肤问题：出油")
    gen = crs_example([s for s in samples if s.task == "respond"][0], corpus.items)
    assert gen.source.endswith("[user]男士洗面奶水乳有没有套装[understand]性别：男；品类：洗面奶；品类：水乳；品类：套装"
                               "[elicit]年龄：；肤质：偏油；肤质：偏干[recommend] Generate a response:")
    assert all(tok in SPECIAL_TOKENS for tok in ("[user]", "[system]", "[understand]", "[elicit]", "[recommend]"))
    # in X_R the [recommend] segment precedes the staff turn that recommends; X_G ends with the explained item
    explain = [s for s in samples if s.task == "respond"][1]
    assert render_history(explain.context, "recommend", corpus.items).endswith("[recommend]577681663455[system]仅发送商品链接")
    assert crs_example(explain, corpus.items).source.endswith("[recommend]577681663455 Generate a response:")


def test_a_reply_layout_opens_with_the_plan_and_keeps_the_latest_turns(corpus):
    samples = [s for s in build_samples(corpus, "test") if s.task == "respond"]
    late = max(samples, key=lambda s: len(s.context))
    assert len(late.context) > 2
    default = crs_example(late, corpus.items)
    assert default.prefix == "" and default.source.endswith(" Generate a response:")
    ex = crs_example(late, corpus.items, "亲，这款可以", ReplyLayout(plan_first=True, context_turns=2))
    assert ex.prefix.startswith(f"[elicit]{format_tags(late.asked)}[recommend]")
    assert ex.prefix.endswith("[LLM]亲，这款可以 Generate a response:")
    assert ex.source == render_history(late.context[-2:], "respond", corpus.items) and ex.target == late.target
    # the other tasks are laid out as before
    und = next(s for s in build_samples(corpus, "test") if s.task == "understand")
    assert crs_example(und, corpus.items, None, ReplyLayout(plan_first=True, context_turns=2)) == crs_example(und, corpus.items)
    # facts: the items show all their knowledge
    from dataclasses import replace

    from uneed.corpus import Item

    item = Item("i1", "s1", {"价格区间": ["高"], "品牌": ["花西子"], "功效": ["保湿"], "肤质": ["干性"]})
    shown = replace(late, items=["i1"])
    full = crs_example(shown, {"i1": item}, None, ReplyLayout(plan_first=True, facts=True)).prefix
    short = crs_example(shown, {"i1": item}, None, ReplyLayout(plan_first=True)).prefix
    assert f"[recommend]{item.text()} Generate" in full and f"[recommend]{item.text(max_relations=2)} Generate" in short


def test_parsers_never_raise():
    assert parse_tags("性别：男；品类：洗面奶;年龄:  ；废话") == (["性别：男", "品类：洗面奶", "年龄："], ["废话"])
    assert parse_tags("") == ([], [])
    assert parse_keys("价位；品牌：小天鹅\n价位") == (["价位", "品牌"], [])
    assert group_pairs([("品类", "洗衣机"), ("功能需求", "不要烘干"), ("功能需求", "功能简单"), ("价位", "")]) == \
        "品类：洗衣机、功能需求：不要烘干、功能简单、价位："


def test_cap_candidates_keeps_gold():
    cands = [f"i{k}" for k in range(30)]
    capped = cap_candidates(cands, "i25")
    assert len(capped) == 20 and "i25" in capped and capped[:19] == cands[:19]


def test_prediction_files(tmp_path):
    path = tmp_path / "p.jsonl"
    assert write_predictions(path, [{"key": "a", "prediction": "x"}, {"key": "b", "prediction": ["1", "2"]}]) == 2
    assert read_predictions(path) == {"a": "x", "b": ["1", "2"]}
    path.write_text('{"key": "a", "prediction": 1}\nnot json\n', encoding="utf-8")
    with pytest.raises(PredictionFileError, match="line 2"):
        read_predictions(path)
