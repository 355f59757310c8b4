"""Probe: which layout of X_G lets a trained CRS's decoder say what its plan asks and presents?

    python scripts/probe_reply_layout.py --run runs/default/crs --data data/small \
        plain:all:0:0 unimind:all:0:300 first2:2:0:300 first2facts:2:1:300 last2facts:2:1:300:last

Each variant NAME:TURNS:FACTS:STEPS[:last] loads the run's best model afresh, lays out every response
sample (TURNS: the latest turns of history, 'all' for all; FACTS 1: the items with all their knowledge;
':last' puts the plan after the history, as UniMIND does, else first, kept whole), trains the decoder on
the train split's replies alone for STEPS batches of 32 (AdamW, lr 1e-3, seed 0) and prints the valid
split's reply checks and BLEU-1 as one JSON line (README, the CRS: how the default layout was chosen).
"""
from __future__ import annotations

import argparse
import json
import random
import time

import torch

from crs.data import batches, collate
from crs.inference import CRS
from uneed.corpus import load_corpus
from uneed.metrics import bleu_n
from uneed.replies import evaluate_replies
from uneed.tasks import ReplyLayout, build_samples, crs_example


def layout_examples(samples, items, turns: int, facts: bool, last: bool):
    layout = ReplyLayout(plan_first=not last, context_turns=turns, facts=facts)
    return [crs_example(s, items, None, layout) for s in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/default/crs")
    parser.add_argument("--data", default="data/small")
    parser.add_argument("variants", nargs="+")
    args = parser.parse_args()
    corpus = load_corpus(args.data)
    train = build_samples(corpus, "train", ["respond"])
    valid = build_samples(corpus, "valid", ["respond"])
    for spec in args.variants:
        name, turns, facts, steps, *rest = spec.split(":")
        torch.manual_seed(0)
        crs = CRS.load(args.run, device="cpu")
        model, enc = crs.model, crs.encoder
        turns_n = 0 if turns == "all" else int(turns)
        train_feats = enc.encode_all(layout_examples(train, corpus.items, turns_n, facts == "1", rest == ["last"]))
        valid_feats = enc.encode_all(layout_examples(valid, corpus.items, turns_n, facts == "1", rest == ["last"]))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        rng, done, t0 = random.Random(0), 0, time.time()
        model.train()
        while done < int(steps):
            for chunk in batches(train_feats, 32, True, rng):
                loss = model.task_loss("respond", collate(chunk, enc.pad))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                done += 1
                if done >= int(steps):
                    break
        model.eval()
        replies = crs.generate_features(valid_feats)
        checks = evaluate_replies(valid, replies, corpus.items, train)["all"]
        print(json.dumps({"variant": name, "steps": int(steps), "train_s": round(time.time() - t0),
                          "ask_names_attribute": round(checks["ask-names-attribute"], 3),
                          "knowledge_true": round(checks["knowledge-true"], 3),
                          "checked_values": checks["knowledge-true/n"], "repeats": round(checks["repetition"], 3),
                          "bleu1": round(sum(bleu_n(r, s.target, 1) for r, s in zip(replies, valid)) / len(valid), 3)}),
              flush=True)


if __name__ == "__main__":
    main()
