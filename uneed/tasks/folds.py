"""Cross-fitting folds of the train split: partner predictions made by a model that did not see them.

In the collaborations each receiver trains on its partner's predictions of the train split. A partner
that predicts its own training samples gives better predictions there than at test time, where every
prediction is out of sample. With `--cross-fit i/K` a training run learns from the train dialogues
outside fold i and predicts the train samples of fold i; K such runs give every train sample a
prediction from a model that never saw its dialogue (scripts/cross_fit.sh).

A dialogue's fold is a hash of its id, so all samples of one dialogue share a fold and the folds
are the same in every run and on every machine.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, TypeVar

from ..errors import PresalesError

T = TypeVar("T")


def parse_cross_fit(text: str | None) -> tuple[int, int] | None:
    """'i/K' → (i, K), with 0 <= i < K and K >= 2; '' or None → None."""
    if not text:
        return None
    fold, sep, folds = str(text).partition("/")
    try:
        i, k = int(fold), int(folds)
    except ValueError:
        i, k = -1, 0
    if not sep or k < 2 or not 0 <= i < k:
        raise PresalesError(f"--cross-fit must be 'i/K' with K >= 2 and 0 <= i < K (e.g. 0/2), got {text!r}")
    return i, k


def fold_of(dialogue_id: str, folds: int) -> int:
    return int(hashlib.sha1(dialogue_id.encode("utf-8")).hexdigest(), 16) % folds


def split_by_fold(samples: Iterable[T], cross_fit: tuple[int, int] | None) -> tuple[list[T], list[T]]:
    """(the samples to train on, the samples of the held-out fold); without cross-fitting, (all, [])."""
    samples = list(samples)
    if cross_fit is None:
        return samples, []
    i, k = cross_fit
    held = [s for s in samples if fold_of(s.sid, k) == i]
    return [s for s in samples if fold_of(s.sid, k) != i], held
