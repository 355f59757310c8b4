"""The LLM's recommendation as a choice among candidate letters.

A recommendation prompt letters its candidates A, B, ... (uneed.tasks.llm_format) and the answer is one
letter. Instead of generating text and reading a letter back, the LLM scores each candidate's letter
by the log-probability of its token as the first token of the answer (one forward pass; the answer is
tokenised apart from the prompt in training, llm.prompts.encode_example, so that is the token it learnt),
and the candidate of highest

    score(letter i) = log p(letter i | prompt) + w * log prior_i

is chosen, prior_i being the share of train answers at letter i (`position_prior`). w = 0 is the model
alone; `fit_prior_weight` chooses w on the valid split after training (the weight of best valid
accuracy, the smallest one among ties). The letters are ordered by popularity (or by the CRS's
ranking), so the prior says how far down that order an answer usually lies.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def letter_token_ids(tokenizer, n: int) -> list[int]:
    """The first token of each of the letters A.. (n of them), as an answer alone is tokenised."""
    from uneed.tasks import letters

    ids = []
    for letter in letters(n):
        encoded = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if not encoded:
            raise ValueError(f"the tokenizer gives no token for the candidate letter {letter!r}")
        ids.append(encoded[0])
    if len(set(ids)) != len(ids):
        raise ValueError("the tokenizer gives two candidate letters the same first token: letters cannot be scored")
    return ids


def position_prior(gold_positions: Sequence[int | None], n: int = 20) -> list[float]:
    """Log share of answers at each of n letters (add-one smoothed); positions None (no gold) are skipped."""
    counts = Counter(p for p in gold_positions if p is not None and 0 <= p < n)
    total = sum(counts.values()) + n
    return [math.log((counts[i] + 1) / total) for i in range(n)]


def choose(scores: Sequence[float], prior: Sequence[float], weight: float) -> int:
    """The letter index of highest score + weight * prior (positions past the prior get its last value)."""
    if not scores:
        raise ValueError("no candidate letters to choose from")

    def total(i: int) -> float:
        if not weight or not prior:
            return scores[i]
        return scores[i] + weight * prior[min(i, len(prior) - 1)]

    return max(range(len(scores)), key=total)


def accuracy(rows: Sequence[tuple[Sequence[float], int | None]], prior: Sequence[float], weight: float) -> float:
    """Share of (letter scores, gold position) rows whose choice is the gold letter."""
    return sum(choose(s, prior, weight) == g for s, g in rows) / len(rows) if rows else 0.0


def fit_prior_weight(rows: Sequence[tuple[Sequence[float], int | None]], prior: Sequence[float],
                     weights: Sequence[float] = PRIOR_WEIGHTS) -> tuple[float, dict[float, float]]:
    """(the weight of best accuracy on these rows, smallest among ties; accuracy at each weight)."""
    scored = {w: accuracy(rows, prior, w) for w in weights}
    best = max(scored.values())
    return min(w for w, a in scored.items() if a == best), scored
