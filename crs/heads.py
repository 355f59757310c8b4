"""Classification heads on the CRS encoder, the alternative to generating understanding and
elicitation outputs with the decoder (`understand_head: extract`, `elicit_head: classify` in the
CRS config; the paper's generative UniMIND path stays the other choice).

    ExtractionHead   understanding as character tagging: every token of the current utterance gets
                     O, B-key or I-key (BIO over the attribute keys), so a value is always a verbatim
                     span of the utterance, as every annotated value of the U-NEED release is; read
                     off as the most likely valid BIO sequence (`viterbi_bio`), touching spans as
                     rare as in the training tags (`touching_span_log_prob`); plus a
                     multi-label head over the keys for attributes named without a value ('年龄：'
                     in a staff question), read from the utterance's pooled encoding.
    ElicitationHead  elicitation as a choice among the attribute keys of the dialogue's domain, the
                     keys the user already stated or the staff already asked masked out.
    NeedsMatcher     recommendation reading the needs: a learned bonus for each candidate from how
                     well its knowledge values match the needs' values (exact, contained, shared
                     characters), added to the recommender's score of that candidate.

The label space (`KeySpace`) is learnt from the train split: every attribute key seen in
understanding or elicitation targets, and which keys each domain uses.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from uneed.needs import MATCH_FEATURES
from uneed.tasks.text import split_tag

OUTSIDE = 0  # the O label; B-key k is 1 + 2k, I-key k is 2 + 2k


class KeySpace:
    """Attribute keys (the label space of the heads) and the keys each domain uses."""

    def __init__(self, keys: Sequence[str], domain_keys: Mapping[str, Sequence[str]]):
        self.keys = list(keys)
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.domain_keys = {d: [k for k in ks if k in self.index] for d, ks in domain_keys.items()}

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def fit(cls, examples: Iterable) -> "KeySpace":
        """From CRS examples (understanding and elicitation targets) of the train split."""
        from uneed.tasks import parse_keys, parse_tags

        by_domain: dict[str, dict[str, None]] = {}
        for ex in examples:
            if ex.task == "understand":
                keys = [split_tag(t)[0] for t in parse_tags(ex.target)[0]]
            elif ex.task == "elicit":
                keys = parse_keys(ex.target)[0]
            else:
                continue
            by_domain.setdefault(ex.domain, {}).update(dict.fromkeys(keys))
        keys = list(dict.fromkeys(k for ks in by_domain.values() for k in ks))
        return cls(keys, {d: list(ks) for d, ks in by_domain.items()})

    def allowed(self, domain: str | None) -> list[bool]:
        """Which keys a sample of `domain` may use (all keys for an unknown or missing domain)."""
        if not domain or domain not in self.domain_keys:
            return [True] * len(self.keys)
        mask = [False] * len(self.keys)
        for k in self.domain_keys[domain]:
            mask[self.index[k]] = True
        return mask

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"keys": self.keys, "domain_keys": self.domain_keys}, ensure_ascii=False,
                                         indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "KeySpace":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(data["keys"], data["domain_keys"])


def bio_labels(text: str, tags: Sequence[str], keys: KeySpace) -> tuple[list[int], list[int]]:
    """Per-character BIO labels of `text` for the valued tags, and the key ids of the tags without
    value. A value is looked for left to right (a repeated value takes its next occurrence); a value
    not in the text, overlapping an earlier one or with an unknown key is left out."""
    labels = [OUTSIDE] * len(text)
    empty: list[int] = []
    taken = [False] * len(text)
    for tag in tags:
        key, value = split_tag(tag)
        if key not in keys.index:
            continue
        k = keys.index[key]
        if not value:
            if k not in empty:
                empty.append(k)
            continue
        start = text.find(value)
        while start != -1 and any(taken[start:start + len(value)]):
            start = text.find(value, start + 1)
        if start == -1:
            continue
        labels[start] = 1 + 2 * k
        for j in range(start, start + len(value)):
            labels[j] = labels[j] if j == start else 2 + 2 * k
            taken[j] = True
    return labels, empty


def span_pieces(source: str, offsets: Sequence[tuple[int, int]]) -> list[str]:
    """The source text of each token of a span, each with the gap before it (the space a BERT or BPE
    tokenizer drops between two words), so that decode_bio gives back 'iPhone 13', not 'iPhone13'; a
    span's leading gap is stripped there. Never the tokens' own texts: a lowercasing tokenizer's
    'vivo' is copied as the user wrote it, 'VIVO'."""
    pieces, prev = [], None
    for a, b in offsets:
        pieces.append(source[(a if prev is None or prev > a else prev):b])
        prev = b
    return pieces


def decode_bio(labels: Sequence[int], pieces: Sequence[str], keys: KeySpace) -> list[tuple[str, str]]:
    """(key, value) spans from token labels; `pieces` are the tokens' texts. An I-key that does not
    continue a span of the same key starts one (a lenient reading of BIO)."""
    spans: list[tuple[str, str]] = []
    cur_key, cur = None, []
    for label, piece in zip(labels, pieces):
        if label == OUTSIDE:
            if cur_key is not None:
                spans.append((cur_key, "".join(cur)))
            cur_key, cur = None, []
            continue
        k, inside = (label - 1) // 2, (label - 1) % 2 == 1
        key = keys.keys[k]
        if inside and cur_key == key:
            cur.append(piece)
            continue
        if cur_key is not None:
            spans.append((cur_key, "".join(cur)))
        cur_key, cur = key, [piece]
    if cur_key is not None:
        spans.append((cur_key, "".join(cur)))
    return [(k, v.strip()) for k, v in spans if v.strip()]


def bio_transitions(num_keys: int, touching_log_prob: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(transition (L, L): score of label j following label i; start (L,): score of a first label) for
    L = 1 + 2K. -inf where BIO forbids it: an I-key only continues a B- or I- of the same key, and no span
    starts with an I-key. A span that starts right where another ends (B after B or I) scores
    `touching_log_prob`, how often that happens in the training tags (`touching_span_log_prob`)."""
    size = 1 + 2 * num_keys
    blocked = float("-inf")
    trans = torch.zeros(size, size)
    inside = torch.arange(2, size, 2)
    trans[:, inside] = blocked
    trans[inside - 1, inside] = 0.0  # B-k -> I-k
    trans[inside, inside] = 0.0  # I-k -> I-k
    trans[1:, inside - 1] = touching_log_prob  # a span, then at once another
    start = torch.zeros(size)
    start[inside] = blocked
    return trans, start


def touching_span_log_prob(label_rows: Iterable[Sequence[int]]) -> float:
    """log P(a span starts right where another ends) in training BIO rows (-100: untagged tokens skipped),
    add-one smoothed. The tagger's per-token choices split a value into touching pieces ('款式：短',
    '品类：靴' for 短靴; '六', '十', '四G' for 六十四G) that valid BIO allows; where the annotations hardly
    ever touch (2 of 4,610 spans of data/small's train split) this prior keeps a value whole."""
    spans = touching = 0
    for row in label_rows:
        prev = OUTSIDE
        for label in row:
            if label < 0:
                continue
            if label != OUTSIDE and (label - 1) % 2 == 0:  # a B-key
                spans += 1
                touching += prev != OUTSIDE
            prev = label
    return math.log((touching + 1) / (spans + 2))


def viterbi_bio(log_probs: torch.Tensor, trans: torch.Tensor, start: torch.Tensor) -> list[int]:
    """The most likely label sequence (T, L) -> T labels under the transition scores of `bio_transitions`.
    Independent per-token choices break values apart ('价位：一', '价位：千五百以下' for 一千五百以下);
    the best valid sequence keeps a span whole when its tokens agree on the key."""
    if log_probs.shape[0] == 0:
        return []
    trans = trans.to(log_probs.device, log_probs.dtype)
    score = log_probs[0] + start.to(log_probs.device, log_probs.dtype)
    back = []
    for t in range(1, log_probs.shape[0]):
        best, arg = (score[:, None] + trans).max(0)
        back.append(arg)
        score = best + log_probs[t]
    label = int(score.argmax())
    path = [label]
    for arg in reversed(back):
        label = int(arg[label])
        path.append(label)
    return path[::-1]


def _masked(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)


class ExtractionHead(nn.Module):
    def __init__(self, d_model: int, num_keys: int):
        super().__init__()
        self.num_keys = num_keys
        self.tagger = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 1 + 2 * num_keys))
        self.valueless = nn.Linear(d_model, num_keys)

    def label_mask(self, allowed_keys: torch.Tensor) -> torch.Tensor:
        """(B, 1 + 2K) bool: O and the B/I labels of the allowed keys."""
        both = allowed_keys.repeat_interleave(2, dim=1)
        return torch.cat([torch.ones_like(allowed_keys[:, :1]), both], dim=1)

    def forward(self, enc: torch.Tensor, span_mask: torch.Tensor, allowed_keys: torch.Tensor):
        """enc (B, S, D); span_mask (B, S) the current utterance's tokens; allowed_keys (B, K).
        Returns tag logits (B, S, 1 + 2K) and valueless-key logits (B, K), disallowed keys masked."""
        tag_logits = _masked(self.tagger(enc).float(), self.label_mask(allowed_keys).unsqueeze(1))
        m = span_mask.to(enc.dtype).unsqueeze(-1)
        pooled = (enc * m).sum(1) / m.sum(1).clamp(min=1)
        return tag_logits, _masked(self.valueless(pooled).float(), allowed_keys)

    def loss(self, enc, batch) -> torch.Tensor:
        tag_logits, key_logits = self(enc, batch["span_mask"], batch["allowed_keys"])
        tag_loss = nn.functional.cross_entropy(tag_logits.reshape(-1, tag_logits.shape[-1]),
                                               batch["tag_labels"].reshape(-1), ignore_index=-100)
        allowed = batch["allowed_keys"]
        key_loss = nn.functional.binary_cross_entropy_with_logits(
            key_logits.masked_fill(~allowed, 0.0), batch["valueless"], reduction="none")
        key_loss = (key_loss * allowed).sum() / allowed.sum().clamp(min=1)
        return tag_loss + key_loss


class ElicitationHead(nn.Module):
    def __init__(self, d_model: int, num_keys: int):
        super().__init__()
        self.scorer = nn.Sequential(nn.Linear(2 * d_model, d_model), nn.GELU(), nn.Linear(d_model, num_keys))

    def forward(self, enc: torch.Tensor, attention_mask: torch.Tensor, allowed_keys: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) over the keys, the disallowed ones masked. The sequence is read through its
        mean and its last token (the prompt's end)."""
        m = attention_mask.to(enc.dtype).unsqueeze(-1)
        mean = (enc * m).sum(1) / m.sum(1).clamp(min=1)
        last = enc[torch.arange(enc.shape[0], device=enc.device), attention_mask.sum(1) - 1]
        return _masked(self.scorer(torch.cat([mean, last], dim=-1)).float(), allowed_keys)

    def loss(self, enc, batch) -> torch.Tensor:
        """Cross-entropy against the gold keys (several gold keys share the target's mass)."""
        logits = self(enc, batch["attention_mask"], batch["allowed_keys"])
        target = batch["key_targets"]
        has = target.sum(1) > 0
        if not has.any():
            return logits.sum() * 0.0
        logp = torch.log_softmax(logits[has], dim=-1)
        target = target[has] / target[has].sum(1, keepdim=True)
        return -(target * logp.clamp(min=-1e4)).sum(1).mean()


# ---------------------------------------------------------------------------------------- needs
class NeedsMatcher(nn.Module):
    """A learned linear bonus on `match_features` (starts at zero: no effect before training)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Linear(MATCH_FEATURES, 1, bias=False)
        nn.init.zeros_(self.weight.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (..., F) -> bonus (...)."""
        return self.weight(features.float()).squeeze(-1)
