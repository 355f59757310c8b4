"""Greedy-decoding constraints shared by the CRS's and the LLM's decoders."""
from __future__ import annotations


def ban_repeated_ngrams(scores, generated, n: int) -> None:
    """Forbid (in place, on scores [B, V]) each next token that would complete an n-gram already in its
    row's output so far (generated [B, T], the new tokens only: a reply may copy what its prompt says).
    n = 2 stops '混合性，还是混合性' and '她她她'."""
    import torch

    length = generated.shape[1]
    if n <= 0 or length == 0 or length < n - 1:
        return
    rows = generated.tolist()
    for b, toks in enumerate(rows):
        tail = toks[length - (n - 1):] if n > 1 else []
        banned = {toks[j + n - 1] for j in range(length - n + 1) if toks[j:j + n - 1] == tail}
        if banned:
            scores[b, list(banned)] = torch.finfo(scores.dtype).min


def keep_only(scores, generated: list, allowed_row) -> None:
    """Forbid (in place, on scores [B, V]) every token but allowed_row(b, generated[b]) in each row
    where that is not None (generated: each row's new token ids so far)."""
    import torch

    for b, toks in enumerate(generated):
        allowed = allowed_row(b, toks)
        if allowed:  # None or nothing: the row chooses freely
            keep = scores[b, allowed].clone()
            scores[b] = torch.finfo(scores.dtype).min
            scores[b, allowed] = keep
