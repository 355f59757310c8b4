"""A synthetic 1,000,000-item catalog: approximate FAISS index (IVF) against exact search.

    python bench/bench_crs_scale.py [--items 1000000] [--dim 64] [--nlist 1024] [--nprobe 8 16 32]

Item vectors are clustered (like learned item embeddings: items of one category/seller close
together), with a bias column as the CRS index has. Prints build times, the recall@50 of the
IVF top-50 against the exact (IndexFlatIP) top-50, and the speed-up of IVF over exact search,
for several nprobe values.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_parser, set_threads  # noqa: E402
from crs.index import ItemIndex  # noqa: E402


def main(argv=None) -> int:
    ap = bench_parser(__doc__, data=False, device=False)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=5000)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", type=int, nargs="*", default=[4, 8, 16, 32])
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t = time.perf_counter()
    centers = rng.normal(size=(args.clusters, args.dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    assign = rng.integers(0, args.clusters, size=args.items)
    emb = centers[assign]
    emb += (0.5 / np.sqrt(args.dim)) * rng.standard_normal(size=emb.shape, dtype=np.float32)
    bias = (0.05 * rng.standard_normal(args.items)).astype(np.float32)
    pick = rng.integers(0, args.items, args.queries)
    queries = (emb[pick] + (0.3 / np.sqrt(args.dim)) * rng.standard_normal((args.queries, args.dim),
                                                                           dtype=np.float32)).astype(np.float32)
    print(f"synthetic catalog: {args.items:,} items x {args.dim} dims (+1 bias), {args.clusters} clusters, "
          f"made in {time.perf_counter() - t:.1f}s; {args.queries} queries, top-{args.k}")

    t = time.perf_counter()
    flat = ItemIndex(emb, bias, kind="flat")
    print(f"exact IndexFlatIP built in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    ivf = ItemIndex(emb, bias, kind="ivf", nlist=args.nlist, nprobe=args.nprobe[0], train_size=args.nlist * 40)
    print(f"IndexIVFFlat (nlist {args.nlist}) trained and filled in {time.perf_counter() - t:.1f}s")

    def timed(fn, reps: int = 1) -> tuple[float, object]:
        best, out = float("inf"), None
        for _ in range(reps):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        return best, out

    t_exact, (exact_rows, _) = timed(lambda: flat.search(queries, args.k))
    # one query at a time too (what an agent's tool call does)
    t1 = time.perf_counter()
    for q in queries[:100]:
        flat.search(q[None], args.k)
    exact_single = (time.perf_counter() - t1) / 100
    print(f"exact: {t_exact / args.queries * 1000:.2f} ms per query batched, {exact_single * 1000:.2f} ms one at a time")
    print(f"{'nprobe':>6s} {'recall@50':>10s} {'ms/query (batch)':>17s} {'speed-up':>9s} {'ms/query (1)':>13s} "
          f"{'speed-up (1)':>13s}")
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        t_ivf, (rows, _) = timed(lambda: ivf.search(queries, args.k), reps=2)
        recall = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(rows, exact_rows)]))
        t1 = time.perf_counter()
        for q in queries[:100]:
            ivf.search(q[None], args.k)
        single = (time.perf_counter() - t1) / 100
        print(f"{nprobe:6d} {recall:10.4f} {t_ivf / args.queries * 1000:17.3f} {t_exact / t_ivf:8.1f}x "
              f"{single * 1000:13.3f} {exact_single / single:12.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
