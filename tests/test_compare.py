"""The realism report (`presales data compare`): each figure measured on crafted and real corpora."""
from __future__ import annotations

import json

from presales.cli import main
from uneed.compare import compare, corpus_profile, frame, lexicon_transfer
from uneed.corpus import load_corpus


def _turn(seq, sender, act, text, attrs=(), rec=()):
    return {"seq_no": seq, "time": f"2022-08-01 10:00:{seq:02d}", "sender_type": sender, "send_content": text,
            "act_tag": act, "attributes": [dict(a) for a in attrs], "rec_item_id": list(rec),
            "rec_item_info": [f"{r}@1801" for r in rec]}


def _span(text, key, value):
    start = text.index(value)
    return {"key": key, "value": value, "start": start, "exclusive_end": start + len(value)}


def _write(root, dialogues):
    """The first dialogue in train, the others in valid (a corpus needs both), test empty."""
    root.mkdir()
    parts = {"train": dialogues[:1], "valid": dialogues[1:], "test": []}
    for split, part in parts.items():
        (root / f"{split}_dialogue.json").write_text(json.dumps(part, ensure_ascii=False), encoding="utf-8")
    (root / "item_kg.txt").write_text(
        "item_id_encrypt,seller_id_encrypt,relation_name,value\n"
        "11111111111,900,一级类目,1801\n11111111111,900,价格区间,中\n"
        "22222222222,900,一级类目,1801\n22222222222,900,价格区间,高\n22222222222,900,功效,补水\n",
        encoding="utf-8")
    (root / "user_action.txt").write_text("seller_id_encrypt,user_id_encrypt,item_id_encrypt,actime,action_id\n",
                                          encoding="utf-8")
    return root


def _dialogue(sid, turns):
    return {"domain": "美妆行业", "sid": sid, "sellerid": "900", "userid": "1" + sid[-3:], "ds": "20220801",
            "dialogue": turns}


def test_frame_blanks_values_and_numbers():
    text = "想要干皮用的面霜，预算300以内"
    spans = [(2, 4), (text.index("面霜"), text.index("面霜") + 2)]
    assert frame(text, spans) == "想要□用的□，预算□以内"
    assert frame(text, spans) == frame("想要油皮用的面膜，预算50以内", [(2, 4), (6, 8)])


def test_profile_measures_structure(tmp_path):
    need = "推荐一款补水的面霜"
    d1 = _dialogue("a" * 32, [
        _turn(1, "用户", "用户需求", need, [_span(need, "功效", "补水"), _span(need, "品类", "面霜")]),
        _turn(2, "客服", "系统解释", "好的亲，稍等哦"),  # an explanation before any recommendation
        _turn(3, "客服", "系统推荐", "仅发送商品链接", rec=["11111111111"]),
        _turn(4, "客服", "系统推荐", "仅发送商品链接", rec=["22222222222"]),
        _turn(5, "用户", "用户反馈", "好的"),
    ])
    need2 = "推荐一款美白的面霜"
    d2 = _dialogue("b" * 32, [
        _turn(1, "用户", "用户需求", need2, [_span(need2, "功效", "美白"), _span(need2, "品类", "面霜")]),
        _turn(2, "客服", "系统推荐", "仅发送商品链接", rec=["11111111111", "22222222222"]),
        _turn(3, "客服", "系统解释", "这款主打补水呢？"),
    ])
    corpus = load_corpus(_write(tmp_path / "c", [d1, d2]))
    p = corpus_profile(corpus)
    assert p["dialogues"] == "2"
    assert p["系统推荐 turns inside runs of 2+ recommendations"] == "66.7% (2/3)"
    assert p["系统推荐 turns carrying more than one item"] == "33.3% (1/3)"
    assert p["items recommended per dialogue, mean (min-max)"] == "2.0 (2-2)"
    assert p["系统解释 with no recommendation before it"] == "50.0% (1/2)"
    assert p["dialogues ending on a staff turn"] == "50.0% (1/2)"
    assert p["用户反馈 turns that state a need (carry attributes)"] == "0.0% (0/1)"
    # the two needs differ verbatim but share one frame; nothing else repeats
    assert p["utterances repeated verbatim across the corpus"] == "0.0% (0/5)"
    assert p["utterances sharing a frame once values are blanked"] == "40.0% (2/5)"
    assert p["staff turns with 亲 / 呢 / ？ (no link-only turns)"] == "50.0% / 50.0% / 50.0%"
    assert p["系统解释 chars, mean / max"] == "7.5 / 8"
    # the loader builds the candidates from the two catalogue items; 11111111111 has only a price band
    assert p["candidates with no knowledge beyond price (of those in item_kg)"] == "50.0% (4/8)"


def test_lexicon_transfer_on_real_samples(samples_dir, tiny_corpus_dir):
    real = load_corpus(samples_dir)
    own = lexicon_transfer(real, real)
    assert own["n"] == 14  # turns with attributes in the three real dialogues
    assert 0.0 <= own["ci95"][0] <= own["f1"] <= own["ci95"][1] <= 1.0
    synthetic = lexicon_transfer(load_corpus(tiny_corpus_dir), real)
    assert synthetic["n"] == 14 and synthetic["f1"] > 0.2


def test_compare_cli(samples_dir, tiny_corpus_dir, capsys):
    assert main(["data", "compare", str(samples_dir), str(tiny_corpus_dir), "--json"]) == 0
    rows = {r["label"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dialogues"]["real"] == "3" and rows["dialogues"]["other"] == "60"
    assert rows["dialogues ending on a staff turn"]["real"] == "100.0% (3/3)"
    assert "肤质" in rows["attribute keys, 美妆行业"]["real"]
    assert len(compare(load_corpus(samples_dir), load_corpus(tiny_corpus_dir))) == len(rows)


def test_compare_cli_bad_directory(tmp_path, samples_dir, capsys):
    assert main(["data", "compare", str(samples_dir), str(tmp_path / "missing")]) != 0
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err
