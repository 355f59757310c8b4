"""The recommender's FAISS index and item-embedding start: exact against brute force, fast tests."""
import numpy as np
import pytest
import torch

from crs.catalog import Catalog, cosine, initial_item_embeddings
from crs.index import ItemIndex
from crs.recommender import Recommender
from uneed.errors import PresalesError


def brute(emb, bias, queries, extra=None):
    scores = torch.from_numpy(queries) @ torch.from_numpy(emb).T + torch.from_numpy(bias)
    if extra:
        for j, bonus in enumerate(extra):
            for r, b in bonus.items():
                scores[j, r] += b
    return scores


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3000, 16)).astype(np.float32)
    bias = rng.normal(size=3000).astype(np.float32) * 0.3
    queries = rng.normal(size=(40, 16)).astype(np.float32)
    return emb, bias, queries


def test_flat_search_equals_brute_force(vectors):
    emb, bias, queries = vectors
    index = ItemIndex(emb, bias, kind="flat")
    rows, scores = index.search(queries, 50)
    ref = brute(emb, bias, queries)
    top = torch.topk(ref, 50, dim=1)
    assert (rows == top.indices.numpy()).all()
    np.testing.assert_allclose(scores, top.values.numpy(), rtol=1e-4, atol=1e-4)


def test_candidate_ranking_gather_and_selector_equal_brute_force(vectors):
    emb, bias, queries = vectors
    index = ItemIndex(emb, bias, kind="flat")
    rng = np.random.default_rng(1)
    cands = [rng.choice(len(emb), 20, replace=False) for _ in queries]
    ref = brute(emb, bias, queries)
    gathered = index.rank_candidates(queries, cands, method="gather")
    selected = index.rank_candidates(queries, cands, method="selector")
    for j, c in enumerate(cands):
        expected = sorted(c, key=lambda r: -float(ref[j, r]))
        assert list(gathered[j][0]) == expected
        assert list(selected[j][0]) == expected
        np.testing.assert_allclose(gathered[j][1], selected[j][1], rtol=1e-5, atol=1e-5)


def test_exclude_and_extra_bonus_stay_exact(vectors):
    emb, bias, queries = vectors
    index = ItemIndex(emb, bias, kind="flat")
    ref = brute(emb, bias, queries)
    first = torch.topk(ref, 5, dim=1).indices.numpy()
    rows, _ = index.search(queries, 10, exclude=[list(r) for r in first])
    for j in range(len(queries)):
        assert not set(rows[j]) & set(first[j])
        masked = ref[j].clone()
        masked[first[j]] = -1e9
        assert list(rows[j]) == torch.topk(masked, 10).indices.tolist()
    # a bonus for a few (low-scored) rows: the result is the exact top-k of the bonus-adjusted scores
    extra = [{int(torch.argmin(ref[j])): 100.0, int(torch.topk(ref[j], 300).indices[-1]): 2.0} for j in range(len(queries))]
    rows, scores = index.search(queries, 10, extra=extra)
    adjusted = brute(emb, bias, queries, extra)
    assert (rows == torch.topk(adjusted, 10, dim=1).indices.numpy()).all()
    ranked = index.rank_candidates(queries, [list(range(30))] * len(queries), extra=extra)
    for j in range(len(queries)):
        assert list(ranked[j][0]) == sorted(range(30), key=lambda r: -float(adjusted[j, r]))


@pytest.mark.parametrize("kind,kwargs", [("hnsw", dict(ef_search=256)), ("ivf", dict(nlist=16, nprobe=16))])
def test_approximate_indexes_find_the_exact_neighbours(vectors, kind, kwargs):
    emb, bias, queries = vectors
    exact, _ = ItemIndex(emb, bias, kind="flat").search(queries, 20)
    approx, _ = ItemIndex(emb, bias, kind=kind, **kwargs).search(queries, 20)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(approx, exact)])
    assert recall >= 0.95
    rows, _ = ItemIndex(emb, bias, kind=kind, **kwargs).search(queries[:3], 5, exclude=[list(exact[0][:5])] * 3)
    assert not set(rows[0]) & set(exact[0][:5])


def test_recommender_scores_match_index(vectors):
    emb, bias, _ = vectors
    rec = Recommender(len(emb), 8, 16, "attention", init_embeddings=torch.from_numpy(emb), init_bias=torch.from_numpy(bias))
    user = torch.randn(4, 16)
    beh = torch.tensor([[-1, 5, 7, 5], [1, 2, 3, 4], [-1, -1, -1, 9], [-1, -1, -1, -1]])
    dense = rec.scores(user, beh)
    bonus = rec.pointer(beh)
    assert bonus[0, 1] == 0 and bonus[0, 3] > bonus[0, 2] > 0  # the latest occurrence of item 5 counts, twice
    extra = [{int(r): float(b) for r, b in zip(rr, bb) if r >= 0 and b != 0} for rr, bb in zip(beh, bonus.detach())]
    index = rec.build_index("flat")
    rows, _ = index.search(user.detach().numpy(), 10, extra=extra)
    assert (rows == torch.topk(dense, 10, dim=1).indices.numpy()).all()


def test_svd_item_embeddings_carry_knowledge(tiny_corpus_dir):
    from uneed.corpus import load_corpus

    corpus = load_corpus(tiny_corpus_dir)
    catalog = Catalog.from_corpus(corpus)
    emb = initial_item_embeddings(catalog, corpus.items, corpus.behaviours, 32)
    rng = np.random.default_rng(0)
    ids = catalog.ids
    # pairs of items sharing seller, leaf category and brand vs random pairs
    groups: dict = {}
    for i in ids:
        item = corpus.items.get(i)
        if item is None:
            continue
        key = (item.seller_id, tuple(item.knowledge.get("叶子类目", [])), tuple(item.knowledge.get("品牌", [])))
        groups.setdefault(key, []).append(catalog.row(i))
    shared = [cosine(emb[g[a]], emb[g[b]]) for g in groups.values() if len(g) > 1
              for a, b in [tuple(rng.choice(len(g), 2, replace=False))]]
    rand = [cosine(emb[a], emb[b]) for a, b in rng.integers(0, len(ids), size=(500, 2)) if a != b]
    assert len(shared) >= 10
    assert np.mean(shared) > np.mean(rand) + 0.2, (np.mean(shared), np.mean(rand))


def test_catalog_load_errors(tmp_path):
    with pytest.raises(PresalesError, match="missing item catalog"):
        Catalog.load(tmp_path / "items.json")
    (tmp_path / "items.json").write_text("{not json")
    with pytest.raises(PresalesError, match="corrupt item catalog"):
        Catalog.load(tmp_path / "items.json")
