"""The CRS's candidate re-ranker (crs/rerank.py): its features by hand, that its fit learns what decides
the gold item, its file, and a trained tiny CRS that ranks with it."""
import json
import math
import random
import shutil

import pytest

from crs.inference import CRS
from crs.rerank import FEATURES, STAGES, Reranker, candidate_features, design_row, stage
from uneed.candidates import popularity_counts
from uneed.errors import ModelLoadError


def test_candidate_features_by_hand():
    f = dict(zip(FEATURES, candidate_features("a", ["苹果", "大字体", "蓝色", "蓝色"], [("品牌", "苹果")], shown=["b", "a"],
                                              behaviours=["a", "c", "a"], popularity={"a": 1.5})))
    assert f["popularity"] == 1.5 and f["exact"] == 1.0 and f["contained"] == 1.0
    assert f["shown"] == 1.0 and f["knowledge"] == pytest.approx(0.3)  # three distinct values
    assert f["browsed"] == pytest.approx(math.log1p(2))
    unseen = dict(zip(FEATURES, candidate_features("z", [], [], [], [], {})))
    assert all(v == 0.0 for v in unseen.values())
    assert [stage([]), stage(["a"]), stage(["a", "a"]), stage(["a", "b", "c"])] == [0, 1, 1, 2]
    row = design_row(0.7, [1.0] * len(FEATURES), at_stage=1)
    assert row[0] == 0.7 and sum(row[1:]) == len(FEATURES) and row[1 + len(FEATURES)] == 1.0


def test_popularity_counts_gold_items_and_the_users_behaviours():
    class S:
        def __init__(self, task, target, user):
            self.task, self.target, self.user_id = task, target, user

    counts = popularity_counts([S("recommend", "a", "u1"), S("recommend", "a", "u2"), S("elicit", ["x"], "u3")],
                               {"u1": ([], ["b", "a"]), "u9": ([], ["c"])})
    assert counts == {"a": round(math.log1p(3), 6), "b": round(math.log1p(1), 6)}  # u9 is no sample's user


def test_the_fit_learns_what_decides_the_gold_item():
    """Gold: at a dialogue's first item, the candidate matching most needs; after two or more, the most
    popular one not shown yet. The model's score is noise. The fit must find both rules."""
    rng = random.Random(0)
    rows, gold = [], []
    for n in range(300):
        at = rng.choice([0, 2])
        feats = [[rng.random(), float(rng.randint(0, 3)), 0.0, 0.0, 0.0, float(rng.random() < 0.3), 0.0, 0.0]
                 for _ in range(10)]
        if at == 0:
            target = max(range(10), key=lambda c: (feats[c][1], feats[c][0]))
        else:
            target = max(range(10), key=lambda c: (feats[c][5] == 0.0, feats[c][0]))
        rows.append([design_row(rng.gauss(0, 1), f, at) for f in feats])
        gold.append(target)
    fitted = Reranker.fit(rows, gold, popularity={})
    w = fitted.named_weights()
    assert fitted.fitted_on["accuracy"] > 0.8 > 0.3 > fitted.fitted_on["model_accuracy"]
    assert w["exact@0"] > 1.0 and w["shown@2"] < -1.0 and w["popularity@2"] > 1.0
    assert abs(w["model_score"]) < 0.5


def test_the_file_round_trips_and_a_foreign_one_is_a_clear_error(tmp_path):
    r = Reranker([0.5] + [0.1] * (len(FEATURES) * STAGES), {"a": 1.0}, {"split": "valid"})
    r.save(tmp_path)
    back = Reranker.load(tmp_path)
    assert back == r
    scores = back.scores([1.0, 1.0], ["a", "b"], {"a": ["x"]}, [], shown=[], behaviours=[])
    assert scores[0] > scores[1]  # a: popular, one knowledge value
    data = json.loads((tmp_path / "reranker.json").read_text())
    data["features"] = ["popularity"]
    (tmp_path / "reranker.json").write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="features"):
        Reranker.load(tmp_path)
    (tmp_path / "reranker.json").unlink()
    with pytest.raises(ModelLoadError, match="re-ranker"):
        Reranker.load(tmp_path)


def test_a_trained_crs_ranks_its_candidates_with_its_reranker(agent_run, tiny_corpus_dir, tmp_path):
    """The tiny CRS of the agent run (configs/crs_tiny.yaml: rerank on) fitted its re-ranker on valid, which
    ranks the valid recommendations better than the model's own order there, and its rankings are the
    re-ranker's order of the model's scores."""
    from crs.evaluate import split_examples
    from crs.inference import _context_needs
    from uneed.corpus import load_corpus

    metrics = json.loads((agent_run / "crs" / "test_metrics.json").read_text())
    info = metrics["reranker"]
    assert info["split"] == "valid" and info["samples"] > 5
    assert info["accuracy"] > info["model_accuracy"], info

    crs, plain = CRS.load(agent_run / "crs"), CRS.load(agent_run / "crs", with_reranker=False)
    assert crs.reranker is not None and plain.reranker is None
    corpus = load_corpus(tiny_corpus_dir)
    samples, _ = split_examples(corpus, "valid", tasks=["recommend"])
    s = next(s for s in samples if any(u.items for u in s.context) and s.behaviours)
    ctx = list(s.context)
    ours = crs.recommend([ctx], behaviours=[s.behaviours], candidates=[s.candidates], k=None)[0]
    model = plain.recommend([ctx], behaviours=[s.behaviours], candidates=[s.candidates], k=None)[0]
    assert sorted(i.item_id for i in ours) == sorted(s.candidates)
    shown = [i for u in ctx for i in u.items]
    expected = crs.reranker.scores([i.score for i in model], [i.item_id for i in model], crs.item_values,
                                   _context_needs(ctx), shown, s.behaviours[-crs.config.max_behaviours:])
    want = sorted(zip(expected, [i.item_id for i in model]), key=lambda t: -t[0])
    assert [i.item_id for i in ours] == [i for _, i in want]
    assert [round(i.score, 4) for i in ours] == [round(v, 4) for v, _ in want]

    broken = tmp_path / "model"
    shutil.copytree(agent_run / "crs" / "best", broken)
    (broken / "reranker.json").unlink()
    with pytest.raises(ModelLoadError, match="re-ranker"):
        CRS.load(broken)
