import json

import pytest

from presales.cli import main as cli
from uneed.candidates import NUM_CANDIDATES, CandidatePools, candidate_rng, fill_missing_candidates
from uneed.corpus import Item, load_corpus
from uneed.validate import CorpusError


def test_loads_real_samples(samples_dir):
    corpus = load_corpus(samples_dir)
    assert [len(corpus.split(s)) for s in ("train", "valid", "test")] == [1, 1, 1]
    d = corpus.split("test")[0]
    assert d.sid == "00095ae344e293ed78cb7d5a78bc63f4" and d.domain == "美妆行业"
    first = d.dialogue[0]
    assert [a.tag for a in first.attributes] == ["性别：男", "品类：洗面奶", "品类：水乳", "品类：套装"]
    assert d.dialogue[1].attributes[0].tag == "年龄：" and d.dialogue[1].attributes[0].start == -1
    assert corpus.items["10027318299"].knowledge == {"一级类目": ["1801"], "价格区间": ["中"], "使用人群": ["妈妈"]}
    assert corpus.user_behaviours("277374149") == ["545878107033", "545878107033"]
    assert corpus.user_behaviours("277374149", before="2022-09-24 17:20:00") == ["545878107033"]
    # recommended ids missing from item_kg.txt are reported, not fatal
    assert corpus.report.ok and len(corpus.report.warnings) == 3
    # the authors' candidate lists are kept as they are
    rec = corpus.split("train")[0].dialogue[3]
    assert len(rec.rec_item_candidates[0]) == 20 and rec.rec_item_candidates[0][-1] == "586711180132"


def _break(path, mutate):
    data = json.loads(path.read_text(encoding="utf-8"))
    mutate(data)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=4), encoding="utf-8")


def test_broken_span_names_file_sid_seq_no_field(samples_copy, capsys):
    _break(samples_copy / "valid_dialogue.json", lambda d: d[0]["dialogue"][2]["attributes"][0].update(start=1))
    with pytest.raises(CorpusError) as info:
        load_corpus(samples_copy)
    [issue] = info.value.report.errors
    assert (issue.file, issue.sid, issue.seq_no, issue.field) == (
        "valid_dialogue.json", "0003c2d628a972f0fcb1a82491e8ae15", 3, "dialogue[2].attributes[0]")
    assert cli(["data", "validate", str(samples_copy)]) == 2
    err = capsys.readouterr().err
    assert "valid_dialogue.json" in err and "sid=0003c2d628a972f0fcb1a82491e8ae15" in err
    assert "seq_no=3" in err and "field=dialogue[2].attributes[0]" in err and "Traceback" not in err


@pytest.mark.parametrize("mutate, field, message", [
    (lambda d: d[0]["dialogue"][1].update(act_tag="闲聊"), "dialogue[1].act_tag", "用户需求"),
    (lambda d: d[0]["dialogue"][1].update(sender_type="机器人"), "dialogue[1].sender_type", "用户"),
    (lambda d: d[0]["dialogue"][2].update(seq_no=1), "dialogue[2].seq_no", "does not increase"),
    (lambda d: d[0]["dialogue"][1]["attributes"][0].update(start=0, exclusive_end=2), "dialogue[1].attributes[0]",
     "-1/-1"),
    (lambda d: d[0]["dialogue"][0]["attributes"][0].update(exclusive_end=99), "dialogue[0].attributes[0]",
     "outside"),
    (lambda d: d[0].pop("sellerid"), "sellerid", "required"),
])
def test_validation_errors(samples_copy, mutate, field, message):
    _break(samples_copy / "valid_dialogue.json", mutate)
    with pytest.raises(CorpusError) as info:
        load_corpus(samples_copy)
    issues = info.value.report.errors
    assert any(i.field == field and message in i.message and i.file == "valid_dialogue.json" for i in issues), issues


def test_skip_invalid_loads_the_rest(samples_copy, capsys):
    _break(samples_copy / "valid_dialogue.json", lambda d: d[0]["dialogue"][1].update(act_tag="闲聊"))
    corpus = load_corpus(samples_copy, skip_invalid=True)
    assert len(corpus.split("valid")) == 0 and len(corpus.split("train")) == 1
    assert corpus.report.skipped_dialogues == [("valid_dialogue.json", "0003c2d628a972f0fcb1a82491e8ae15")]
    assert cli(["data", "validate", str(samples_copy), "--skip-invalid"]) == 0
    assert "skipped 1 invalid dialogues" in capsys.readouterr().out


def test_bad_json_and_missing_files(samples_copy, tmp_path, capsys):
    (samples_copy / "test_dialogue.json").write_text("[{", encoding="utf-8")
    with pytest.raises(CorpusError, match="not valid JSON"):
        load_corpus(samples_copy)
    # a train or valid file cut short: the headline says the JSON is broken, not that the split is empty
    valid = samples_copy / "valid_dialogue.json"
    valid.write_text(valid.read_text(encoding="utf-8")[:300], encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(samples_copy)
    assert "valid_dialogue.json: not valid JSON" in str(info.value) and "holds no dialogue" not in str(info.value)
    assert sum("valid_dialogue.json" in str(i) for i in info.value.report.errors) == 1
    assert cli(["data", "validate", str(tmp_path / "nowhere")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["data", "stats", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "item_kg.txt: missing file" in err and "Traceback" not in err


def test_bad_csv_row_is_reported_with_its_line(samples_copy):
    path = samples_copy / "user_action.txt"
    path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + "\nonly,two\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(samples_copy)
    [issue] = info.value.report.errors
    assert issue.file == "user_action.txt" and issue.line == 4


def _catalog_corpus():
    """Seller S1 has 5 items of category 1; category 1 has 30 more items elsewhere; category 2 has 100."""
    from uneed.corpus import Corpus

    items = {}
    def add(i, seller, cat):
        items[i] = Item(i, seller, {"一级类目": [cat]})
    for k in range(5):
        add(f"s1-{k}", "S1", "1")
    for k in range(30):
        add(f"c1-{k}", f"S{2 + k % 3}", "1")
    for k in range(100):
        add(f"c2-{k}", "S9", "2")
    return Corpus(dialogues={}, items=items, behaviours={})


def test_candidates_follow_seller_then_category_then_random():
    pools = CandidatePools(_catalog_corpus())
    cands = pools.build("s1-0", "S1", "1", candidate_rng(42, "sid", 4, 0))
    assert len(cands) == NUM_CANDIDATES == len(set(cands)) and "s1-0" in cands
    assert sum(c.startswith("s1-") for c in cands) == 5  # the whole seller first
    assert sum(c.startswith("c1-") for c in cands) == 15  # then the same category
    # a seller too small and a category too small: random items fill up
    cands = pools.build("x", "S-none", "no-cat", candidate_rng(42, "sid", 4, 0))
    assert len(cands) == 20 and "x" in cands
    # seeded: the same inputs give the same shuffled list, another seed another one
    again = pools.build("s1-0", "S1", "1", candidate_rng(42, "sid", 4, 0))
    other = pools.build("s1-0", "S1", "1", candidate_rng(7, "sid", 4, 0))
    assert again == pools.build("s1-0", "S1", "1", candidate_rng(42, "sid", 4, 0)) and again != other


def test_missing_candidates_are_built_on_load(samples_copy):
    def drop(d):
        for t in d[0]["dialogue"]:
            t.pop("rec_item_candidates")
    _break(samples_copy / "test_dialogue.json", drop)
    corpus = load_corpus(samples_copy, candidate_seed=3)
    turn = next(t for t in corpus.split("test")[0].dialogue if t.rec_item_id)
    [cands] = turn.rec_item_candidates
    assert turn.rec_item_id[0] in cands
    assert load_corpus(samples_copy, candidate_seed=3).split("test")[0].dialogue[6].rec_item_candidates == [cands]


def test_stats_cli(samples_dir, capsys):
    assert cli(["data", "stats", str(samples_dir), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["all"]["dialogues"] == 3 and stats["美妆行业"]["turns"] == 19
    assert stats["all"]["act_系统提问"] == 4 and stats["all"]["knowledge_tuples"] == 3


def test_synth_cli_and_baselines(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert cli(["data", "synth", "--out", str(out), "--scale", "tiny", "--seed", "1"]) == 0
    assert cli(["data", "validate", str(out)]) == 0
    assert cli(["data", "synth", "--out", str(out), "--scale", "huge"]) == 2
    assert "--scale must be one of" in capsys.readouterr().err
    from uneed.baselines import evaluate_baselines

    results = evaluate_baselines(load_corpus(out), "test")
    # held-out surface forms keep a train-set lexicon matcher visibly below a perfect score
    assert 0.2 < results["understand"]["all"]["f1"] < 0.95
    assert results["recommend"]["all"]["n"] > 0


def test_gold_needs_rule_ranks_by_answered_needs_then_browsed_then_popular():
    from types import SimpleNamespace

    from uneed.baselines import GoldNeedsRule, PopularityRecommender
    from uneed.tasks.samples import TaskSample

    items = {"a": SimpleNamespace(knowledge={"颜色": ["红色"]}), "b": SimpleNamespace(knowledge={"颜色": ["黑色"]}),
             "c": SimpleNamespace(knowledge={"颜色": ["黑色"], "品牌": ["小米"]}), "d": SimpleNamespace(knowledge={})}
    popularity = PopularityRecommender()
    popularity.counts.update({"d": 5, "a": 3})
    rule = GoldNeedsRule(SimpleNamespace(items=items), popularity)
    sample = TaskSample(task="recommend", split="test", domain="手机行业", sid="s", seq_no=1, user_id="u", seller_id="x",
                        context=[], current=None, target="c",
                        needs=[("颜色", "黑色"), ("品牌", "小米")], candidates=["a", "b", "c", "d"], behaviours=["b"])
    assert rule.rank(sample) == ["c", "b", "a", "d"]  # both needs; one need; then popularity over browsing nothing
    sample.needs = []
    assert rule.rank(sample) == ["b", "d", "a", "c"]  # no needs: browsed first, then popular


def test_popularity_skips_what_the_dialogue_already_recommended():
    from types import SimpleNamespace

    from uneed.baselines import PopularityRecommender, shown_items
    from uneed.tasks import Utterance

    popularity = PopularityRecommender()
    popularity.counts.update({"d": 5, "a": 3, "b": 1})
    assert popularity.rank(["a", "b", "c", "d"]) == ["d", "a", "b", "c"]
    context = [Utterance("用户", "要手机", "用户需求"), Utterance("客服", "仅发送商品链接", "系统推荐", items=["d"])]
    sample = SimpleNamespace(context=context)
    assert shown_items(sample) == ["d"]
    assert popularity.rank(["a", "b", "c", "d"], shown_items(sample)) == ["a", "b", "c", "d"]


def test_cli_exit_codes_of_scripts_and_bad_options(tmp_path, capsys):
    # a training script's failure reaches the shell, and an unknown option is a usage error, not an internal one
    assert cli(["train", "crs", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "run")]) == 2
    assert cli(["data", "stats", "--bogus"]) == 2
    err = capsys.readouterr().err
    # the wording is click's: "No such option: --bogus" or "No such option '--bogus'." by release
    assert "No such option" in err and "--bogus" in err and "internal error" not in err
