"""The CRS's candidate re-ranker: the last step of every recommendation it makes.

The trained model scores an item by u . e_i + c_i (+ the behaviour pointer and the needs bonus). On
the 20 candidates of a recommendation that score alone stays below popularity: its dense part fits
the train split (train accuracy 0.31, valid 0.18 on data/small). What decides a staff recommendation
is simpler and is learnt from few samples: a linear model on the model's score and a few features of
each candidate, each feature weighted separately for a dialogue's first item, its second, and the
ones after (`STAGES`: a first item is chosen differently from one that follows items the shopper
turned down):

    popularity   log(1 + count) of the item among the train recommendations and train users' behaviours
    exact, contained, share, share_mean
                 how well its knowledge answers the needs stated so far (uneed.needs.match_features)
    shown        the dialogue recommended it already
    knowledge    how many knowledge values the item has (/10)
    browsed      log(1 + how often the user browsed it)

It is fitted after training, by L-BFGS on the candidate cross-entropy of the *valid* split's
recommendation samples: on train samples the model's own score is in-sample and would be trusted far
too much. Saved beside the model as reranker.json. It orders candidate lists (the 20 candidates of a
sample, or the items a caller gives); a search of the catalog or of a whole category keeps the
model's order (crs.inference: there the model's score is what finds the right kind of item).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch

from uneed.errors import ModelLoadError
from uneed.needs import match_features

FEATURES = ("popularity", "exact", "contained", "share", "share_mean", "shown", "knowledge", "browsed")
STAGES = 3  # items the dialogue showed before: 0, 1, 2 or more
FILE = "reranker.json"


def stage(shown: Sequence[str]) -> int:
    return min(len(set(shown)), STAGES - 1)


def candidate_features(item_id: str, values: Iterable[str], needs: Sequence[tuple[str, str]], shown: Sequence[str],
                       behaviours: Sequence[str], popularity: Mapping[str, float]) -> list[float]:
    """The FEATURES of one candidate (unweighted by stage)."""
    values = list(values)
    return [popularity.get(item_id, 0.0), *match_features(needs, values), float(item_id in shown),
            len(set(values)) / 10.0, math.log1p(sum(1 for b in behaviours if b == item_id))]


def design_row(model_score: float, features: Sequence[float], at_stage: int) -> list[float]:
    """[model score] + the features in the block of their stage (zeros in the other blocks)."""
    row = [0.0] * (1 + len(FEATURES) * STAGES)
    row[0] = model_score
    start = 1 + at_stage * len(FEATURES)
    row[start:start + len(FEATURES)] = features
    return row


def design_rows(model_scores: Sequence[float], item_ids: Sequence[str], values: Mapping[str, Sequence[str]],
                needs: Sequence[tuple[str, str]], shown: Sequence[str], behaviours: Sequence[str],
                popularity: Mapping[str, float]) -> list[list[float]]:
    """The design_row of each of one sample's items (what the re-ranker is fitted on and scores)."""
    at = stage(shown)
    return [design_row(float(score), candidate_features(item_id, values.get(item_id, ()), needs, shown, behaviours,
                                                        popularity), at)
            for score, item_id in zip(model_scores, item_ids)]


@dataclass
class Reranker:
    weights: list[float]  # 1 + len(FEATURES) * STAGES: the model's score first, then stage by stage
    popularity: dict[str, float]  # item id -> log(1 + count); items never seen in train are left out
    fitted_on: dict  # what it was fitted on and how it scored there (for the run's report)

    def scores(self, model_scores: Sequence[float], item_ids: Sequence[str], values: Mapping[str, Sequence[str]],
               needs: Sequence[tuple[str, str]], shown: Sequence[str], behaviours: Sequence[str]) -> list[float]:
        """The re-ranked scores of one sample's items."""
        return [sum(w * x for w, x in zip(self.weights, row))
                for row in design_rows(model_scores, item_ids, values, needs, shown, behaviours, self.popularity)]

    @classmethod
    def fit(cls, rows: Sequence[Sequence[Sequence[float]]], gold: Sequence[int], popularity: dict[str, float],
            l2: float = 1e-3, fitted_on: dict | None = None) -> "Reranker":
        """rows[n][c]: design_row of candidate c of sample n (samples may have different numbers of
        candidates); gold[n]: the index of the gold candidate."""
        if not rows:
            raise ValueError("no samples to fit the re-ranker on")
        width = max(len(r) for r in rows)
        x = torch.zeros(len(rows), width, 1 + len(FEATURES) * STAGES, dtype=torch.float64)
        valid = torch.zeros(len(rows), width, dtype=torch.bool)
        for n, r in enumerate(rows):
            x[n, : len(r)] = torch.tensor(r, dtype=torch.float64)
            valid[n, : len(r)] = True
        y = torch.tensor(list(gold))
        w = torch.zeros(x.shape[-1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

        def objective():
            opt.zero_grad()
            logits = (x @ w).masked_fill(~valid, -1e9)
            loss = torch.nn.functional.cross_entropy(logits, y) + l2 * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(objective)
        weights = [round(v, 6) for v in w.detach().tolist()]
        with torch.no_grad():
            logits = (x @ w).masked_fill(~valid, -1e9)
            acc = (logits.argmax(1) == y).double().mean().item()
            base = (x[..., 0].masked_fill(~valid, -1e9).argmax(1) == y).double().mean().item()
        info = {**(fitted_on or {}), "samples": len(rows), "accuracy": round(acc, 4), "model_accuracy": round(base, 4)}
        return cls(weights, popularity, info)

    def named_weights(self) -> dict[str, float]:
        out = {"model_score": self.weights[0]}
        for s in range(STAGES):
            for k, name in enumerate(FEATURES):
                out[f"{name}@{s}"] = self.weights[1 + s * len(FEATURES) + k]
        return out

    def save(self, model_dir: str | Path) -> None:
        path = Path(model_dir) / FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**asdict(self), "features": list(FEATURES), "stages": STAGES}, ensure_ascii=False))
        tmp.replace(path)

    @classmethod
    def load(cls, model_dir: str | Path) -> "Reranker":
        path = Path(model_dir) / FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{path}: cannot read the candidate re-ranker ({exc})") from exc
        if data.get("features") != list(FEATURES) or data.get("stages") != STAGES:
            raise ModelLoadError(f"{path}: written for features {data.get('features')} x {data.get('stages')} stages, "
                                 f"this version reads {list(FEATURES)} x {STAGES}")
        return cls(list(data["weights"]), dict(data["popularity"]), dict(data.get("fitted_on", {})))
