"""FAISS item index of the recommender: maximum inner product search over the whole catalog.

The score of item i for a user representation u is u . e_i + b_i (equation 2 with a linear CLS and
an item bias). The bias is folded into the vectors, so a plain inner product index is exact:
    indexed vector  [e_i, b_i]        query  [u, 1]

Kinds:
    flat   IndexFlatIP, exact (the default)
    ivf    IndexIVFFlat (inner product), approximate: nlist k-means cells, nprobe of them searched
    hnsw   IndexHNSWFlat (inner product), approximate graph search with efSearch

Per-query additive bonuses of a few items (`extra`: {row: bonus}, the recommender's behaviour
pointer) stay exact: the index returns the top k + len(extra), the extra rows are scored exactly
(vector . query + bonus) and the union is cut to k.

Ranking the given candidates of a sample (Acc/Hit@5/MRR@5) never goes through an approximate
structure: the candidates' stored vectors are scored exactly (`rank_candidates`, method 'gather');
method 'selector' does the same through a FAISS search on a flat index restricted to the candidates
with an `IDSelectorArray` (the two are equal; tests/test_crs_index.py checks it). Whole-catalog
search can leave out already-rejected items through an `IDSelectorNot(IDSelectorBatch(...))`.

On the GPU (`device`: auto | cpu | gpu; auto takes the GPU when the installed FAISS sees one,
`faiss.get_num_gpus() > 0`, i.e. the `gpu` extra's faiss-gpu on a CUDA machine): flat and IVF indexes get a
GPU copy (`index_cpu_to_gpu`, IVF with the same trained cells and nprobe) that answers whole-catalog
searches; FAISS's GPU indexes take no ID selectors, so a search that excludes rows asks the GPU for
k + the excluded count and drops them (the same rows as the selector on CPU). HNSW has no GPU
implementation and stays on the CPU, as do the candidate rankings (exact, a few rows each).
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import faiss
import numpy as np

from .config import INDEX_DEVICES as DEVICES

log = logging.getLogger(__name__)


def augment_items(embeddings: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    b = np.zeros((emb.shape[0], 1), np.float32) if bias is None else np.asarray(bias, np.float32).reshape(-1, 1)
    return np.ascontiguousarray(np.hstack([emb, b]))


def augment_queries(queries: np.ndarray) -> np.ndarray:
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    return np.ascontiguousarray(np.hstack([q, np.ones((q.shape[0], 1), np.float32)]))


def gpu_count() -> int:
    """GPUs the installed FAISS can use (0 with faiss-cpu, or without a CUDA device)."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except Exception:  # noqa: BLE001 - a GPU build on a machine whose driver is broken: no GPU
        return 0


def pick_index_device(requested: str, kind: str) -> str:
    """'gpu' or 'cpu' for an index of `kind`: auto takes the GPU when FAISS sees one and the kind has a
    GPU implementation (flat, ivf); ValueError when `gpu` is asked for and cannot be had."""
    if requested not in DEVICES:
        raise ValueError(f"index device must be one of {DEVICES}, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    if kind == "hnsw":
        if requested == "gpu":
            raise ValueError("index device gpu: FAISS has no GPU HNSW; use index flat or ivf, or device cpu")
        return "cpu"
    if gpu_count() > 0:
        return "gpu"
    if requested == "gpu":
        raise ValueError("index device gpu: the installed FAISS sees no GPU (install the gpu extra, faiss-gpu, on "
                         "a CUDA machine) ")
    return "cpu"


def default_nlist(n: int) -> int:
    return max(1, min(int(2 * math.sqrt(n)), n // 39 or 1))


class ItemIndex:
    """Inner-product search over item vectors; row ids are catalog rows."""

    def __init__(self, embeddings: np.ndarray, bias: np.ndarray | None = None, kind: str = "flat",
                 nlist: int = 0, nprobe: int = 32, hnsw_m: int = 32, ef_search: int = 128,
                 ef_construction: int = 64, train_size: int | None = None, seed: int = 0, device: str = "auto"):
        self.device = pick_index_device(device, kind)
        self.vectors = augment_items(embeddings, bias)
        self.n, self.dim = self.vectors.shape
        self.kind = kind
        self.nprobe = nprobe
        self.ef_search = ef_search
        if kind == "flat":
            self.index = faiss.IndexFlatIP(self.dim)
        elif kind == "ivf":
            nlist = nlist or default_nlist(self.n)
            self.nlist = nlist
            quantizer = faiss.IndexFlatIP(self.dim)
            self.index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.cp.niter = 10
            self.index.cp.seed = seed
            size = min(self.n, train_size or max(nlist * 64, 10_000))
            rng = np.random.default_rng(seed)
            sample = self.vectors if size >= self.n else self.vectors[rng.choice(self.n, size, replace=False)]
            self._quantizer = quantizer  # keep alive
            self.index.train(sample)
            self.index.nprobe = nprobe
        elif kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(self.dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = ef_construction
            self.index.hnsw.efSearch = ef_search
        else:
            raise ValueError(f"unknown index kind {kind!r}; choose flat, ivf or hnsw")
        self.index.add(self.vectors)
        self.gpu_index = None
        if self.device == "gpu":
            self._gpu_resources = faiss.StandardGpuResources()  # keep alive with the index
            self.gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.index)
            if kind == "ivf":
                self.gpu_index.nprobe = nprobe
            log.info("FAISS %s index of %d items on the GPU", kind, self.n)

    def __len__(self) -> int:
        return self.n

    def _params(self, selector=None):
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(nprobe=self.nprobe, sel=selector) if selector is not None \
                else faiss.SearchParametersIVF(nprobe=self.nprobe)
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(self.ef_search, 1), sel=selector) if selector is not None \
                else faiss.SearchParametersHNSW(efSearch=max(self.ef_search, 1))
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[int]] | None = None,
               extra: Sequence[dict] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores of each query over the whole catalog, best first.

        `exclude[j]`: rows never returned for query j. `extra[j]`: {row: bonus} added to those rows'
        scores. Rows of -1 (score -inf) pad a short result.
        """
        if extra is not None and any(extra):
            return self._search_extra(queries, k, exclude, extra)
        q = augment_queries(queries)
        k = max(1, min(int(k), self.n))
        if self.gpu_index is not None:
            return self._search_gpu(q, k, exclude)
        if not exclude or not any(len(e) for e in exclude):
            params = self._params()
            scores, rows = self.index.search(q, k, params=params) if params is not None else self.index.search(q, k)
            return rows, scores
        rows_out = np.full((q.shape[0], k), -1, dtype=np.int64)
        scores_out = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        for j in range(q.shape[0]):
            ex = np.asarray(sorted(set(int(r) for r in (exclude[j] if j < len(exclude) else []))), dtype=np.int64)
            if len(ex):
                batch = faiss.IDSelectorBatch(ex)
                selector = faiss.IDSelectorNot(batch)
                params = self._params(selector)
                s, r = self.index.search(q[j:j + 1], k, params=params)
                del selector, batch
            else:
                params = self._params()
                s, r = self.index.search(q[j:j + 1], k, params=params) if params is not None \
                    else self.index.search(q[j:j + 1], k)
            rows_out[j], scores_out[j] = r[0], s[0]
        scores_out[rows_out < 0] = -np.inf
        return rows_out, scores_out

    def _search_gpu(self, q: np.ndarray, k: int, exclude) -> tuple[np.ndarray, np.ndarray]:
        """One batched search on the GPU copy; excluded rows are searched past (k + their count) and dropped."""
        banned = [set(int(r) for r in (exclude[j] if exclude and j < len(exclude) else ())) for j in range(len(q))]
        wide = min(self.n, k + max((len(b) for b in banned), default=0))
        scores, rows = self.gpu_index.search(q, wide)
        if wide == k:
            return rows, scores
        rows_out = np.full((q.shape[0], k), -1, dtype=np.int64)
        scores_out = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        for j in range(q.shape[0]):
            keep = [i for i, r in enumerate(rows[j]) if r >= 0 and int(r) not in banned[j]][:k]
            rows_out[j, : len(keep)] = rows[j][keep]
            scores_out[j, : len(keep)] = scores[j][keep]
        return rows_out, scores_out

    def _search_extra(self, queries, k, exclude, extra):
        q = augment_queries(queries)
        k = max(1, min(int(k), self.n))
        m = max(len(e) for e in extra)
        rows, scores = self.search(queries, min(self.n, k + m), exclude)
        rows_out = np.full((q.shape[0], k), -1, dtype=np.int64)
        scores_out = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        for j in range(q.shape[0]):
            bonus = extra[j] if j < len(extra) else {}
            banned = set(int(r) for r in exclude[j]) if exclude and j < len(exclude) else set()
            found = {int(r): float(s) for r, s in zip(rows[j], scores[j]) if r >= 0}
            for r, b in bonus.items():
                r = int(r)
                if r in banned:
                    continue
                found[r] = float(self.vectors[r] @ q[j]) + float(b)
            best = sorted(found.items(), key=lambda rs: -rs[1])[:k]
            rows_out[j, : len(best)] = [r for r, _ in best]
            scores_out[j, : len(best)] = [s for _, s in best]
        return rows_out, scores_out

    def rank_candidates(self, queries: np.ndarray, candidates: Sequence[Sequence[int]],
                        method: str = "gather", extra: Sequence[dict] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, its candidate rows sorted by exact score (best first) and the scores.

        method 'gather': score the stored vectors of the candidates (exact whatever the index kind);
        method 'selector': a FAISS flat search restricted to the candidates with an IDSelectorArray.
        Ties keep the candidates' given order.
        """
        q = augment_queries(queries)
        out = []
        if method == "selector" and self.kind != "flat":
            raise ValueError("method 'selector' needs the exact flat index")
        for j, cands in enumerate(candidates):
            rows = np.asarray(list(cands), dtype=np.int64)
            if len(rows) == 0:
                out.append((rows, np.zeros(0, np.float32)))
                continue
            bonus = extra[j] if extra is not None and j < len(extra) else {}
            if method == "gather":
                scores = self.vectors[rows] @ q[j]
                if bonus:
                    scores = scores + np.asarray([bonus.get(int(r), 0.0) for r in rows], dtype=np.float32)
                order = np.argsort(-scores, kind="stable")
                out.append((rows[order], scores[order].astype(np.float32)))
            elif method == "selector":
                uniq = np.unique(rows)
                selector = faiss.IDSelectorArray(uniq)
                s, r = self.index.search(q[j:j + 1], len(uniq), params=faiss.SearchParameters(sel=selector))
                del selector
                keep = r[0] >= 0
                r, s = r[0][keep], s[0][keep]
                if bonus:
                    s = s + np.asarray([bonus.get(int(x), 0.0) for x in r], dtype=np.float32)
                    order = np.argsort(-s, kind="stable")
                    r, s = r[order], s[order]
                out.append((r, s))
            else:
                raise ValueError(f"unknown method {method!r}")
        return out
