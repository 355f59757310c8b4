"""Replay of U-NEED dialogues through the graphs: the metrics against hand-computed values on a
hand-made dialogue, the batching of model calls, and replays end to end over real tiny models."""
import json
import math
import subprocess
import sys

import pytest

from eval.batching import CallBatcher, run_concurrently
from eval.replay import (METRICS, ReplayArgs, aggregate, decision_accuracy, dialogue_points, render_markdown, replay,
                         score_point, write_report)
from uneed.corpus import Item
from uneed.errors import PresalesError
from uneed.metrics import get_metric
from uneed.schema import Dialogue


def _turn(seq, sender, act, text, attrs=(), items=()):
    spans = []
    for key, value in attrs:
        start = text.find(value) if value else -1
        spans.append({"key": key, "value": value, "start": start, "exclusive_end": start + len(value) if value else -1})
    return {"seq_no": seq, "time": f"2022-09-01 10:00:0{seq}", "sender_type": sender, "send_content": text,
            "act_tag": act, "attributes": spans, "rec_item_id": list(items), "rec_item_info": []}


@pytest.fixture(scope="module")
def hand_dialogue():
    return Dialogue.model_validate({"domain": "美妆行业", "sid": "s1", "sellerid": "x", "userid": "u1", "ds": "20220901",
                                    "dialogue": [
        _turn(1, "用户", "用户需求", "想要保湿的面霜", [("功效", "保湿"), ("品类", "面霜")]),
        _turn(2, "客服", "系统提问", "请问您是什么肤质呢", [("肤质", "")]),
        _turn(3, "用户", "用户回答", "干皮", [("肤质", "干皮")]),
        _turn(4, "客服", "系统推荐", "仅发送商品链接", items=["A1"]),
        _turn(5, "客服", "系统解释", "这款面霜很保湿"),
        _turn(6, "用户", "用户反馈", "太贵了"),
        _turn(7, "客服", "系统推荐", "仅发送商品链接", items=["A2"]),
    ]})


def test_replay_points_hold_the_gold_history(hand_dialogue):
    points = list(dialogue_points(hand_dialogue, lambda time: ["B9"] if time >= "2022-09-01 10:00:04" else []))
    assert [p.key for p in points] == ["s1/0", "s1/1", "s1/2"]
    first, second, third = points
    assert (first.gold_act, first.gold_asked, first.gold_tags, first.previous_reply) == \
        ("ask", ["肤质"], ["功效：保湿", "品类：面霜"], None)
    assert first.history["transcript"] == [] and first.history["behaviours"] == []
    assert second.history["behaviours"] == ["B9"]  # what the user browsed before the staff answered
    # the staff block (a link, then its explanation) is one point; link-only words are not a reference
    assert (second.gold_act, second.gold_items, second.gold_text) == ("recommend", ["A1"], "这款面霜很保湿")
    assert second.previous_reply == "请问您是什么肤质呢"
    assert [t["text"] for t in second.history["transcript"]] == ["想要保湿的面霜", "请问您是什么肤质呢"]
    assert second.history["needs"] == {"功效": ["保湿"], "品类": ["面霜"]} and second.history["asked"] == ["肤质"]
    assert third.gold_text == "" and third.history["recommended"] == ["A1"]
    assert third.history["needs"]["肤质"] == ["干皮"] and len(third.history["messages"]) == 5


def test_every_replay_metric_by_hand(hand_dialogue):
    ask, rec, last = dialogue_points(hand_dialogue, lambda time: [])
    items = {"A3": Item("A3", "x", {"功效": ["补水"]}), "A1": Item("A1", "x", {"功效": ["保湿"]})}
    vocab = {"功效": {"补水", "滋润", "保湿"}}

    def pred(action, reply, tags=(), asked=(), attributes=(), items_=(), ranking=()):
        return {"action": action, "reply": reply, "tags": list(tags), "asked": list(asked),
                "attributes": list(attributes), "items": list(items_), "ranking": list(ranking), "llm_item": None}

    s = score_point(ask, pred("ask", "请问是干性皮肤吗", asked=["肤质", "价位"], attributes=["肤质：干性", "价位："]),
                    None, items, vocab)
    assert s["action-agreement"] == 1.0 and s["und-f1"] == 0.0 and s["und-precision"] == 0.0
    assert (s["ask-precision"], s["ask-recall"]) == (0.5, 1.0) and s["ask-f1"] == pytest.approx(2 / 3)
    bp = math.exp(1 - 9 / 8)  # 8 reply characters against 9 of the staff's
    assert s["bleu-1"] == pytest.approx(bp * 4 / 8)  # 请 问 是 肤
    assert s["bleu-2"] == pytest.approx(bp * math.sqrt(4 / 8 * 1 / 7))  # 请问 among 7 bigrams
    assert s["distinct-1"] == 1.0 and s["distinct-2"] == 1.0
    assert s["ask-names-attribute"] == 1.0  # names the offered value 干性
    assert s["knowledge-true"] is None and s["repetition"] == 0.0 and s["items-hit@1"] is None

    s = score_point(rec, pred("recommend", "【商品 A3】这款面霜很滋润", tags=["肤质：干皮", "品类：面霜"], items_=["A3"],
                              ranking=["A3", "A1", "A4"]), 7, items, vocab)
    assert s["action-agreement"] == 1.0
    assert (s["und-precision"], s["und-recall"]) == (0.5, 1.0) and s["und-f1"] == pytest.approx(2 / 3)
    assert s["ask-f1"] is None  # the staff asked nothing here
    assert (s["items-hit@1"], s["items-mrr"]) == (0.0, 0.5)
    assert [s[f"catalog-hit@{k}"] for k in (1, 5, 10, 50)] == [0.0, 0.0, 1.0, 1.0]
    assert s["catalog-mrr@50"] == pytest.approx(1 / 8)
    assert s["bleu-1"] == pytest.approx(5 / 7)  # the link card is not part of the words
    assert s["bleu-2"] == pytest.approx(math.sqrt(5 / 7 * 4 / 6))
    assert s["knowledge-true"] == 0.0  # 滋润 is a 功效 value A3 does not have
    s = score_point(rec, pred("recommend", "【商品 A3】这款面霜很滋润，兰蔻的", items_=["A3"]), 7, items,
                    {**vocab, "品牌": {"兰蔻"}})
    assert s["knowledge-true"] == 0.0  # A3's knowledge has no 品牌: 兰蔻 is not judged, 滋润 still is
    assert s["repetition"] == 0.0 and s["ask-names-attribute"] is None

    s = score_point(last, pred("close", "【商品 A1】这款面霜很保湿", items_=[]), None, items, vocab)
    assert s["action-agreement"] == 0.0  # closing explains; the staff recommended
    assert s["und-f1"] is None and s["bleu-1"] is None  # no annotation, a link-only staff turn
    assert (s["items-hit@1"], s["items-mrr"], s["catalog-hit@50"]) == (0.0, 0.0, 0.0)
    s = score_point(ask, pred("ask", "亲亲，请问是混合性，还是混合性呢", attributes=["肤质：混合性"]), None, items, vocab)
    assert s["repetition"] == 1.0 and s["ask-names-attribute"] == 1.0  # the same option back to back

    scores = [score_point(p, pred("explain", "好的"), None, items, vocab) for p in (ask, rec, last)]
    table = aggregate([("美妆行业", x) for x in scores])
    assert table["all"]["n"] == 3 and table["美妆行业"]["n"] == 3
    assert table["all"]["n_und-f1"] == 2 and table["all"]["action-agreement"] == 0.0
    assert set(table["all"]) >= {m for m in METRICS if m not in ("ask-names-attribute", "knowledge-true")}


def test_end_to_end_decision_accuracy_counts_only_staff_asks_and_recommendations():
    confusion = {"ask": {"ask": 3, "recommend": 1, "close": 1}, "recommend": {"recommend": 2, "ask": 3},
                 "explain": {"explain": 4, "ask": 2}}
    assert decision_accuracy(confusion) == (pytest.approx(5 / 10), 10)  # explain points and their actions ignored
    assert decision_accuracy({"explain": {"explain": 1}}) == (0.0, 0)


def test_batcher_merges_concurrent_calls_and_keeps_each_result():
    calls = []

    class Model:
        def double(self, xs, scale=1):
            calls.append(list(xs))
            if -1 in xs:
                raise ValueError("bad input")
            return [x * 2 * scale for x in xs]

    model = Model()
    batcher = CallBatcher()
    batcher.wrap(model, "double")
    outs = run_concurrently([lambda i=i: (model.double([i, i + 100]), model.double([i], scale=3))
                             for i in range(8)], workers=8, batcher=batcher)
    assert outs == [([2 * i, 2 * i + 200], [6 * i]) for i in range(8)]
    assert batcher.requests == 16 and batcher.calls < 16 and max(len(c) for c in calls) > 2
    # an error reaches every caller of the merged call; the others go on
    outs = run_concurrently([lambda: model.double([-1]), lambda: model.double([5])], workers=2, batcher=batcher)
    assert isinstance(outs[0], ValueError) and outs[1] == [10]
    batcher.restore()
    assert model.double([1]) == [2] and "double" not in model.__dict__


def test_replay_end_to_end(agent_run, tiny_corpus_dir, tmp_path):
    args = ReplayArgs(data=str(tiny_corpus_dir), run=str(agent_run), graph="both", max_dialogues=3, workers=4,
                      processes=1, progress=False)
    report = replay(args)
    assert set(report["graphs"]) == {"llm", "crs", "trivial"} and report["points"] > 3
    for kind, g in ((k, report["graphs"][k]) for k in ("llm", "crs")):
        assert g["errors"] == 0
        records = g["records"]
        assert len(records) == report["points"]
        assert {r["prediction"]["action"] for r in records} <= {"ask", "recommend", "explain", "close"}
        assert all(r["steps"][0]["node"] == "receive" and r["steps"][0]["text"] == r["user"][:200] for r in records)
        allm = g["metrics"]["all"]
        assert allm["n"] == report["points"] and 0.0 <= allm["action-agreement"] <= 1.0
        assert sum(sum(c.values()) for c in g["confusion"].values()) == report["points"]
        assert g["batching"]["calls"] < g["batching"]["requests"]  # model calls of threads were merged
    # the trivial policy, on the same points: one act per category, the lexicon's tags, popular items
    from uneed.baselines import LexiconMatcher
    from uneed.corpus import load_corpus
    from uneed.tasks import build_samples

    corpus = load_corpus(tiny_corpus_dir)
    lexicon = LexiconMatcher().fit(build_samples(corpus, "train", ["understand"]))
    trivial = report["graphs"]["trivial"]["records"]
    assert len(trivial) == report["points"]
    for domain in {r["domain"] for r in trivial}:
        assert len({r["prediction"]["action"] for r in trivial if r["domain"] == domain}) == 1
    for r in trivial:
        assert r["prediction"]["tags"] == lexicon.predict(r["user"], r["domain"])
        if r["prediction"]["action"] == "recommend":
            assert r["prediction"]["items"] == r["prediction"]["ranking"][:1]
    out = write_report(report, tmp_path / "rep")
    lines = [json.loads(x) for x in out["jsonl"].read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3 * report["points"]
    summary = json.loads(out["json"].read_text(encoding="utf-8"))
    assert "records" not in summary["graphs"]["llm"] and summary["offline"]
    md = out["md"].read_text(encoding="utf-8")
    assert "| graph 1 (LLM in control) |" in md and "| trivial policy (" in md
    from uneed.device import cpu_bf16_matmul

    assert report["bf16_prefill"] == cpu_bf16_matmul()  # auto: where the CPU has bf16 matrix units
    assert ("prompt pass ran in bfloat16" if cpu_bf16_matmul() else "prompt pass ran in float32") in md
    accuracy, n = decision_accuracy(report["graphs"]["llm"]["confusion"])
    assert f"Ask vs recommend, end to end (graph 1 (LLM in control)): {accuracy:.3f} of the {n} points" in md
    assert out["png"].stat().st_size > 10_000 and out["csv"].read_text().startswith("graph,category,metric")


def test_replay_batched_or_in_processes_equals_one_by_one(agent_run, tiny_corpus_dir):
    def run(processes, workers):
        return replay(ReplayArgs(data=str(tiny_corpus_dir), run=str(agent_run), graph="both", max_dialogues=2,
                                 processes=processes, workers=workers, progress=False, bf16_prefill="off"))

    one, many, shared = run(1, 1), run(1, 6), run(2, 1)
    for kind in ("llm", "crs"):
        assert [r["prediction"] for r in one["graphs"][kind]["records"]] == \
            [r["prediction"] for r in many["graphs"][kind]["records"]]
        assert many["graphs"][kind]["batching"]["calls"] < one["graphs"][kind]["batching"]["calls"]
        # two worker processes sharing one pool for both graphs, each with its own copy of each graph:
        # the same turns, in the same order
        assert shared["graphs"][kind]["batching"]["processes"] == 2 and shared["graphs"][kind]["errors"] == 0
        assert [(r["key"], r["prediction"], r["scores"]) for r in one["graphs"][kind]["records"]] == \
            [(r["key"], r["prediction"], r["scores"]) for r in shared["graphs"][kind]["records"]]
    assert shared["unknown_to_catalog"] == one["unknown_to_catalog"]
    assert 0 < shared["seconds"] and "of wall time" in render_markdown(shared)


def test_replay_of_the_real_samples(agent_run, samples_dir):
    report = replay(ReplayArgs(data=str(samples_dir), run=str(agent_run), graph="crs", split="valid",
                               progress=False, workers=2, processes=1))
    g = report["graphs"]["crs"]
    assert report["points"] == 3 and g["errors"] == 0
    assert report["missing_items"] >= 1  # the samples recommend items their item_kg.txt excerpt lacks


def test_replay_bad_input_is_one_line(agent_run, tiny_corpus_dir, tmp_path):
    with pytest.raises(PresalesError, match="--graph"):
        replay(ReplayArgs(data=str(tiny_corpus_dir), run=str(agent_run), graph="gpt"))
    proc = subprocess.run([sys.executable, "-m", "presales.cli", "replay", "--data", str(tmp_path / "nope"),
                           "--run", str(agent_run), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nope" in proc.stderr


def test_a_replayed_turn_runs_on_the_gold_history_in_the_checkpointer(agent_run, tiny_corpus_dir):
    from agent.assistant import Assistant, memory_checkpointer
    from eval.replay import replay_points, run_point
    from uneed.corpus import load_corpus

    assistant = Assistant.from_run(agent_run, "crs", checkpointer=memory_checkpointer())
    point = next(p for p in replay_points(load_corpus(tiny_corpus_dir), "test") if len(p.history["transcript"]) >= 3)
    result = run_point(assistant, point, "gold-thread")
    gold = point.history["transcript"]
    transcript = result["state"]["transcript"]
    assert transcript[:len(gold)] == gold  # the earlier turns are the corpus's, not re-generated
    assert transcript[len(gold)]["text"] == point.user_text and transcript[-1]["speaker"] == "客服"
    needs = result["state"]["needs"]
    assert all(set(v) <= set(needs.get(k, [])) for k, v in point.history["needs"].items())
    steps = assistant.history("gold-thread")
    assert steps[-1]["next"] == [] and len(steps) > 3  # the seeded checkpoint, then the turn's nodes
    with pytest.raises(PresalesError, match="already exists"):
        assistant.seed_thread("gold-thread", point.history)
