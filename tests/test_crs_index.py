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


# ------------------------------------------------------------------------------------ FAISS on the GPU
class FakeGpuIndex:
    """Stands for what faiss.index_cpu_to_gpu returns: a copy of the CPU index that takes no search
    parameters (FAISS's GPU indexes take no ID selectors); it counts its searches."""

    def __init__(self, cpu_index):
        import faiss

        self.inner = faiss.clone_index(cpu_index)
        self.searches = 0
        self.nprobe = None

    def search(self, q, k, **kwargs):
        assert not kwargs, "a GPU index takes no search parameters"
        self.searches += 1
        if self.nprobe is not None:
            self.inner.nprobe = self.nprobe
        return self.inner.search(q, k)


@pytest.fixture()
def fake_gpu(monkeypatch):
    import faiss

    made = []

    def to_gpu(resources, device, index):
        assert device == 0 and resources == "resources"
        made.append(FakeGpuIndex(index))
        return made[-1]

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: "resources", raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    return made


def test_cpu_is_chosen_without_a_gpu_build(vectors):
    import faiss

    from crs.index import gpu_count, pick_index_device

    emb, bias, _ = vectors
    assert faiss.get_num_gpus() == 0 and gpu_count() == 0  # this machine: faiss-cpu
    assert ItemIndex(emb, bias).device == "cpu" and ItemIndex(emb, bias).gpu_index is None
    assert pick_index_device("auto", "flat") == "cpu"
    with pytest.raises(ValueError, match="sees no GPU"):
        ItemIndex(emb, bias, device="gpu")
    with pytest.raises(ValueError, match="must be one of"):
        pick_index_device("cuda", "flat")


def test_gpu_is_chosen_when_faiss_sees_one_with_the_same_results(vectors, fake_gpu):
    from crs.index import pick_index_device

    emb, bias, queries = vectors
    assert [pick_index_device(d, k) for d, k in (("auto", "flat"), ("auto", "ivf"), ("auto", "hnsw"),
                                                 ("cpu", "flat"), ("gpu", "ivf"))] == ["gpu", "gpu", "cpu", "cpu", "gpu"]
    with pytest.raises(ValueError, match="no GPU HNSW"):
        pick_index_device("gpu", "hnsw")
    cpu = ItemIndex(emb, bias, device="cpu")
    gpu = ItemIndex(emb, bias)  # auto
    assert gpu.device == "gpu" and len(fake_gpu) == 1
    exclude = [list(cpu.search(queries[j:j + 1], 7)[0][0][::2]) for j in range(len(queries))]  # some of each top 7
    for kwargs in ({}, {"exclude": exclude}, {"exclude": exclude, "extra": [{5: 3.0, 7: -1.0}] * len(queries)}):
        rows, scores = gpu.search(queries, 20, **kwargs)
        ref_rows, ref_scores = cpu.search(queries, 20, **kwargs)
        assert (rows == ref_rows).all(), kwargs
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
        if "exclude" in kwargs:
            assert not any(set(r) & set(e) for r, e in zip(rows.tolist(), exclude))
    assert fake_gpu[0].searches == 3  # every whole-catalog search went to the GPU copy, batched
    ivf = ItemIndex(emb, bias, kind="ivf", nlist=16, nprobe=4)
    assert ivf.device == "gpu" and fake_gpu[-1].nprobe == 4  # the GPU copy searches as many cells
    cpu_ivf = ItemIndex(emb, bias, kind="ivf", nlist=16, nprobe=4, device="cpu")
    assert (ivf.search(queries, 10)[0] == cpu_ivf.search(queries, 10)[0]).all()
    hnsw = ItemIndex(emb, bias, kind="hnsw")
    assert hnsw.device == "cpu" and hnsw.gpu_index is None
