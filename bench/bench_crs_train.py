"""Training throughput (samples/s) of a CRS preset on this machine's CPU (or GPU).

    python bench/bench_crs_train.py [--data data/small] [--preset default] [--batches 40]

Builds the model exactly as `presales train crs` does (tokenizer, SVD item embeddings, catalog) and
times optimizer steps of stage 1 (recommendation batches) and stage 2 (the four tasks mixed), after
a few warm-up steps. Generates the small embedded corpus under a temporary directory when --data
is missing.
"""
from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import bench_data, bench_parser, set_threads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--batches", type=int, default=40, help="timed batches per stage")
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    from crs.data import batches, collate
    from training.crs import CRSTrainArgs, Trainer, param_groups
    from training.runtime import autocast, set_seed

    data = bench_data(args.data)
    set_seed(0)
    targs = CRSTrainArgs(data=str(data), out=tempfile.mkdtemp(), preset=args.preset, device=args.device)
    tr = Trainer(targs)
    t0 = time.perf_counter()
    tr.load_data()
    tr.build_model()
    tr.model.to(tr.device)
    tr.features()
    print(f"setup (corpus, tokenizer, SVD item init, features): {time.perf_counter() - t0:.1f}s; device {tr.device}, "
          f"torch threads {torch.get_num_threads()}, preset {args.preset}: {tr.model.config.d_model} d_model, "
          f"{tr.model.config.encoder_layers}+{tr.model.config.decoder_layers} layers, "
          f"{sum(p.numel() for p in tr.model.parameters()) / 1e6:.1f}M parameters "
          f"(items {tr.model.recommender.item_emb.numel() / 1e6:.1f}M)")
    opt = torch.optim.AdamW(param_groups(tr.model, targs))
    tr.model.train()
    rng = random.Random(0)
    for stage in (1, 2):
        feats = [f for f in tr.train_feats if stage == 2 or f.task == "recommend"]
        rec = [f for f in feats if f.task == "recommend"]
        gen = [f for f in feats if f.task != "recommend"]
        plan = list(batches(rec, targs.rec_batch_size, True, rng)) + list(batches(gen, targs.batch_size, True, rng))
        rng.shuffle(plan)
        while len(plan) < args.warmup + args.batches:
            plan += plan
        n = 0
        t = 0.0
        for i, chunk in enumerate(plan[: args.warmup + args.batches]):
            start = time.perf_counter()
            batch = collate(chunk, tr.encoder.pad, tr.device)
            with autocast(tr.device):
                loss = tr.model.recommend_loss(batch, targs.candidate_loss_weight) if chunk[0].task == "recommend" \
                    else tr.model.generation_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if tr.device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                t += time.perf_counter() - start
                n += len(chunk)
        per_epoch = len(feats) / (n / t)
        print(f"stage {stage} ({'recommendation' if stage == 1 else 'all four tasks'}): {n / t:.1f} samples/s "
              f"over {n} samples -> {per_epoch:.0f}s per epoch of {len(feats)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
