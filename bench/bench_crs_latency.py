"""Recommendation latency over a catalog of the real release's size (68,954 items).

    python bench/bench_crs_latency.py [--items 68954] [--dim 128] [--queries 2000] [--run RUN_DIR]

Prints p50/p99 latency per query (one query at a time) and QPS (one at a time and in batches of
64) of: FAISS exact inner product (IndexFlatIP, the CRS default), a plain torch matrix product +
topk over the same vectors, and FAISS HNSW. Item vectors are clustered synthetic embeddings (or
the item embeddings of a trained CRS with --run); the top-50 of FAISS and torch are checked equal.
With --run it also times CRS.recommend end to end (encoder + search) on test contexts.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_parser, set_threads  # noqa: E402
from crs.index import ItemIndex, augment_queries  # noqa: E402


def clustered(n: int, dim: int, clusters: int, rng: np.random.Generator, noise: float = 0.35) -> np.ndarray:
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    assign = rng.integers(0, clusters, size=n)
    x = centers[assign] + noise * rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
    return x.astype(np.float32)


def pct(times: list[float]) -> tuple[float, float]:
    a = np.asarray(times) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def time_single(fn, queries: np.ndarray) -> tuple[float, float, float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q[None, :])
        times.append(time.perf_counter() - t)
    p50, p99 = pct(times)
    return p50, p99, len(queries) / sum(times)


def time_batched(fn, queries: np.ndarray, bs: int = 64) -> float:
    t = time.perf_counter()
    for s in range(0, len(queries), bs):
        fn(queries[s:s + bs])
    return len(queries) / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = bench_parser(__doc__, data=False, device=False)
    ap.add_argument("--items", type=int, default=68_954)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--run", help="a trained CRS run: use its item embeddings and time CRS.recommend")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    crs = None
    if args.run:
        from crs.inference import CRS

        crs = CRS.load(args.run, device="cpu")
        emb = crs.model.recommender.item_emb.detach().numpy()
        bias = crs.model.recommender.item_bias.detach().numpy()
        args.dim = emb.shape[1]
    else:
        emb = clustered(args.items, args.dim, 1000, rng)
        bias = 0.05 * rng.normal(size=len(emb)).astype(np.float32)
    n = len(emb)
    queries = (emb[rng.integers(0, n, args.queries)] + 0.3 * rng.normal(size=(args.queries, args.dim)) /
               np.sqrt(args.dim)).astype(np.float32)
    print(f"catalog {n:,} items x {args.dim} dims (+1 bias), {args.queries} queries, top-{args.k}, "
          f"torch threads {torch.get_num_threads()}")

    t = time.perf_counter()
    flat = ItemIndex(emb, bias, kind="flat")
    print(f"IndexFlatIP built in {time.perf_counter() - t:.2f}s")
    t = time.perf_counter()
    hnsw = ItemIndex(emb, bias, kind="hnsw", hnsw_m=32, ef_search=128, ef_construction=64)
    print(f"IndexHNSWFlat built in {time.perf_counter() - t:.2f}s")

    items_t = torch.from_numpy(flat.vectors)  # [e, b]

    def torch_search(q: np.ndarray):
        with torch.no_grad():
            return torch.topk(torch.from_numpy(augment_queries(q)) @ items_t.T, args.k, dim=1)

    # correctness: FAISS exact top-k == torch top-k
    r_faiss, _ = flat.search(queries[:200], args.k)
    r_torch = torch_search(queries[:200]).indices.numpy()
    same = float(np.mean([set(a) == set(b) for a, b in zip(r_faiss, r_torch)]))
    r_hnsw, _ = hnsw.search(queries[:200], args.k)
    recall = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(r_hnsw, r_faiss)]))
    print(f"top-{args.k} identical (FAISS flat vs torch): {same:.3f} of queries; HNSW recall@{args.k}: {recall:.3f}")

    print(f"{'method':28s} {'p50 ms':>8s} {'p99 ms':>8s} {'QPS (1)':>9s} {'QPS (64)':>9s}")
    for name, fn in [("FAISS IndexFlatIP (exact)", lambda q: flat.search(q, args.k)),
                     ("torch matmul + topk (exact)", torch_search),
                     ("FAISS HNSW (approximate)", lambda q: hnsw.search(q, args.k))]:
        time_single(fn, queries[:50])  # warm-up
        p50, p99, qps1 = time_single(fn, queries)
        qps64 = time_batched(fn, queries)
        print(f"{name:28s} {p50:8.3f} {p99:8.3f} {qps1:9.0f} {qps64:9.0f}")

    cand = [rng.choice(n, 20, replace=False) for _ in range(args.queries)]
    t = time.perf_counter()
    for j in range(args.queries):
        flat.rank_candidates(queries[j:j + 1], [cand[j]])
    dt = (time.perf_counter() - t) / args.queries
    print(f"ranking 20 given candidates (exact gather): {dt * 1000:.3f} ms per query")

    if crs is not None:
        from crs.evaluate import split_examples
        from uneed.corpus import load_corpus

        print("end to end CRS.recommend timing needs the corpus; pass it with CRS_BENCH_DATA") \
            if not os.environ.get("CRS_BENCH_DATA") else None
        if os.environ.get("CRS_BENCH_DATA"):
            corpus = load_corpus(os.environ["CRS_BENCH_DATA"])
            samples, _ = split_examples(corpus, "test", tasks=["recommend"])
            samples = samples[:200]
            times = []
            for s in samples:
                t = time.perf_counter()
                crs.recommend([s.context], behaviours=[s.behaviours], k=args.k)
                times.append(time.perf_counter() - t)
            p50, p99 = pct(times)
            print(f"CRS.recommend end to end (encoder + FAISS, 1 query): p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                  f"QPS {len(times) / sum(times):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
