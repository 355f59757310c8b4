"""From CRS sequences (uneed.tasks.crs_example) to tensors: tokenising, left truncation, batches.

Sources are `<s> ... </s>`; a source longer than `max_source_len` loses its OLDEST tokens (the
prompt Z_* sits at the end, so it is never cut) and the truncation is counted and logged.
Targets are `... </s>`, cut on the right. Recommendation features carry catalog rows: the gold item,
the candidates, the behaviours (latest last, unknown items dropped) and the LLM's item (-1: none).
With the heads of crs.heads (an Encoder given a KeySpace), understanding features also carry the
tokens' character offsets, the current utterance's tokens and their BIO labels, elicitation
features the gold keys and the keys allowed, and recommendation features (given the items'
knowledge values) the needs-match features of every candidate.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import random
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import torch

from uneed.device import pad_multiple, round_up
from uneed.needs import ItemValues, match_features
from uneed.replies import clause_prefixes
from uneed.tasks import CRSExample, parse_keys, parse_tags

from .catalog import Catalog
from .heads import KeySpace, bio_labels
from .model import special_ids

log = logging.getLogger(__name__)


@dataclass
class Features:
    key: str
    task: str
    domain: str
    input_ids: list[int]
    labels: list[int] = field(default_factory=list)
    gold: int = -1
    candidates: list[int] = field(default_factory=list)
    behaviours: list[int] = field(default_factory=list)
    llm_row: int = -1
    truncated: bool = False
    # the classification heads (crs.heads)
    source: str = ""  # understand: the source text the offsets point into
    offsets: list[tuple[int, int]] = field(default_factory=list)  # understand: characters of each token
    span_tokens: list[int] = field(default_factory=list)  # understand: token positions of the utterance
    tag_labels: list[int] = field(default_factory=list)  # understand: BIO label per token (-100: not tagged)
    valueless: list[int] = field(default_factory=list)  # understand: keys named without a value
    key_targets: list[int] = field(default_factory=list)  # elicit: gold keys
    allowed: list[bool] = field(default_factory=list)  # understand/elicit: keys the sample may use
    match: list[list[float]] = field(default_factory=list)  # recommend: needs-match features per candidate
    needs: list[tuple[str, str]] = field(default_factory=list)  # recommend: the needs they were computed from
    shown: list[str] = field(default_factory=list)  # recommend: items the dialogue recommended before (crs.rerank)


class Encoder:
    """Turns CRSExamples into Features with one tokenizer, catalog and length budget."""

    def __init__(self, tok, catalog: Catalog, max_source_len: int, max_target_len: int, max_behaviours: int = 50,
                 keys: KeySpace | None = None, head_tasks: Sequence[str] = (),
                 item_values: Mapping[str, Sequence[str]] | None = None):
        self.tok = tok
        self.catalog = catalog
        self.max_source_len = max_source_len
        self.max_target_len = max_target_len
        self.max_behaviours = max_behaviours
        self.keys = keys
        self.head_tasks = set(head_tasks) if keys is not None else set()  # tasks answered by a head
        self.item_values = item_values
        self._prepared_values: dict[str, ItemValues] = {}  # item id -> its values, prepared once
        self.pad, self.bos, self.eos = special_ids(tok)

    def ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False, truncation=False)["input_ids"]

    def source(self, text: str, prefix: str = "") -> tuple[list[int], bool]:
        """<s> prefix text </s> within max_source_len: `text` loses its oldest tokens first (it ends with the
        latest turns and the prompt), then the prefix its last ones."""
        room = max(1, self.max_source_len - 2)
        head = self.ids(prefix)[:room] if prefix else []
        ids = self.ids(text)
        keep = room - len(head)
        truncated = len(head) + len(ids) > room
        ids = head + (ids[max(0, len(ids) - keep):] if keep > 0 else [])
        return [self.bos] + ids + [self.eos], truncated

    def target(self, text: str) -> list[int]:
        """The target's tokens and </s> within max_target_len; a longer target is cut after its last whole
        clause that fits (uneed.replies.clause_prefixes), or mid-clause when none fits."""
        ids = self.ids(text)
        room = max(1, self.max_target_len - 1)
        if len(ids) > room:
            whole = (p for p in map(self.ids, clause_prefixes(text)) if len(p) <= room)
            ids = next(whole, ids[:room])
        return ids + [self.eos]

    def encode(self, ex: CRSExample) -> Features:
        if ex.task == "understand" and "understand" in self.head_tasks:
            return self._extraction(ex)
        input_ids, truncated = self.source(ex.source, ex.prefix)
        f = Features(ex.key, ex.task, ex.domain, input_ids, truncated=truncated)
        if ex.task == "recommend":
            f.gold = self.catalog.row(ex.gold_item)
            f.candidates = self.catalog.rows(ex.candidates)
            f.behaviours = self.catalog.rows(ex.behaviours)[-self.max_behaviours:]
            f.llm_row = self.catalog.row(ex.llm_item)
            f.shown = list(ex.shown)
            f.needs = list(ex.needs)
            if self.item_values is not None:
                f.match = [match_features(ex.needs, self._values_of(self.catalog.ids[r])) for r in f.candidates]
        else:
            f.labels = self.target(ex.target)
        if ex.task == "elicit" and "elicit" in self.head_tasks:
            allowed = self.keys.allowed(ex.domain)
            for key in ex.known_keys:  # never ask what the user said or the staff asked already
                if key in self.keys.index:
                    allowed[self.keys.index[key]] = False
            f.allowed = allowed
            f.key_targets = [self.keys.index[k] for k in parse_keys(ex.target)[0] if k in self.keys.index]
        return f

    def _values_of(self, item_id: str) -> ItemValues:
        prepared = self._prepared_values.get(item_id)
        if prepared is None:
            prepared = self._prepared_values[item_id] = ItemValues(self.item_values.get(item_id, ()))
        return prepared

    def _extraction(self, ex: CRSExample) -> Features:
        """An understanding sample for the extraction head: tokens with their character offsets (left
        truncation drops offsets with their tokens) and the BIO labels of the current utterance."""
        enc = self.tok(ex.source, add_special_tokens=False, truncation=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        room = max(1, self.max_source_len - 2)
        truncated = len(ids) > room
        if truncated:
            ids, offsets = ids[-room:], offsets[-room:]
        start, end = ex.span if ex.span is not None else (0, len(ex.source))
        text = ex.source[start:end]
        char_labels, valueless = bio_labels(text, parse_tags(ex.target)[0], self.keys)
        span_tokens, tag_labels = [], [-100]
        for j, (a, b) in enumerate(offsets):
            inside = start <= a and b <= end and b > a
            if inside:
                span_tokens.append(j + 1)  # +1: the <s> in front
            tag_labels.append(char_labels[a - start] if inside else -100)
        tag_labels.append(-100)
        return Features(ex.key, ex.task, ex.domain, [self.bos] + ids + [self.eos], truncated=truncated,
                        source=ex.source, offsets=[(0, 0)] + offsets + [(0, 0)], span_tokens=span_tokens,
                        tag_labels=tag_labels, valueless=valueless, allowed=self.keys.allowed(ex.domain))

    def encode_all(self, examples: Sequence[CRSExample], what: str = "", processes: int = 0) -> list[Features]:
        """Features of every example, in order. `processes` > 1 shares the examples out over forked
        worker processes (0: one per CPU core, at most 16, for 4,000 examples or more): the encoding is
        per-sample Python, and on a GPU machine the GPU waited a minute on it for the full-size corpus."""
        if processes == 0:
            processes = min(len(os.sched_getaffinity(0)), 16) if len(examples) >= 4000 else 1
        processes = min(processes, len(examples))
        if processes > 1 and "fork" in multiprocessing.get_all_start_methods():
            feats = self._encode_in_processes(examples, processes)
        else:
            feats = [self.encode(ex) for ex in examples]
        n_trunc = sum(f.truncated for f in feats)
        if n_trunc:
            log.info("%s%d of %d sources longer than %d tokens: truncated from the left (oldest turns dropped)",
                     f"{what}: " if what else "", n_trunc, len(feats), self.max_source_len)
        return feats

    def _encode_in_processes(self, examples: Sequence[CRSExample], processes: int) -> list[Features]:
        global _FORKED_ENCODER
        chunk = max(200, len(examples) // (processes * 8))
        parts = [examples[s:s + chunk] for s in range(0, len(examples), chunk)]
        # fork: the children inherit this encoder (tokenizer, catalog, item values) instead of unpickling it
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        _FORKED_ENCODER = self
        try:
            with multiprocessing.get_context("fork").Pool(processes) as pool:
                return [f for part in pool.imap(_encode_part, parts) for f in part]
        finally:
            _FORKED_ENCODER = None


_FORKED_ENCODER: Encoder | None = None


def _encode_part(examples: Sequence[CRSExample]) -> list[Features]:
    return [_FORKED_ENCODER.encode(ex) for ex in examples]


def collate(feats: Sequence[Features], pad: int, device: torch.device | str = "cpu") -> dict:
    """Right-padded sources; labels padded with -100; behaviours left-padded with -1 (latest last).
    On a GPU, source and target widths are rounded up to a few sizes (uneed.device.pad_multiple)."""
    n = len(feats)
    multiple = pad_multiple(device)
    src_len = round_up(max(len(f.input_ids) for f in feats), multiple)
    input_ids = torch.full((n, src_len), pad, dtype=torch.long)
    mask = torch.zeros((n, src_len), dtype=torch.long)
    for i, f in enumerate(feats):
        input_ids[i, : len(f.input_ids)] = torch.tensor(f.input_ids)
        mask[i, : len(f.input_ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if feats[0].task == "recommend":
        m = max((len(f.behaviours) for f in feats), default=0)
        beh = torch.full((n, m), -1, dtype=torch.long)
        for i, f in enumerate(feats):
            if f.behaviours:
                beh[i, m - len(f.behaviours):] = torch.tensor(f.behaviours)
        batch["behaviours"] = beh
        batch["gold"] = torch.tensor([f.gold for f in feats], dtype=torch.long)
        batch["llm_rows"] = torch.tensor([f.llm_row for f in feats], dtype=torch.long)
        c = max((len(f.candidates) for f in feats), default=0)
        cands = torch.full((n, max(c, 1)), -1, dtype=torch.long)
        for i, f in enumerate(feats):
            if f.candidates:
                cands[i, : len(f.candidates)] = torch.tensor(f.candidates)
        batch["candidates"] = cands
        if feats[0].match:
            match = torch.zeros((n, max(c, 1), len(feats[0].match[0])), dtype=torch.float)
            for i, f in enumerate(feats):
                if f.match:
                    match[i, : len(f.match)] = torch.tensor(f.match)
            batch["match"] = match
    elif feats[0].task == "understand" and feats[0].allowed:
        batch["allowed_keys"] = torch.tensor([f.allowed for f in feats], dtype=torch.bool)
        labels = torch.full((n, src_len), -100, dtype=torch.long)
        span = torch.zeros((n, src_len), dtype=torch.bool)
        valueless = torch.zeros((n, len(feats[0].allowed)), dtype=torch.float)
        for i, f in enumerate(feats):
            labels[i, : len(f.tag_labels)] = torch.tensor(f.tag_labels)
            span[i, f.span_tokens] = True
            valueless[i, f.valueless] = 1.0
        batch.update(tag_labels=labels, span_mask=span, valueless=valueless)
    elif feats[0].task == "elicit" and feats[0].allowed:
        batch["allowed_keys"] = torch.tensor([f.allowed for f in feats], dtype=torch.bool)
        targets = torch.zeros((n, len(feats[0].allowed)), dtype=torch.float)
        for i, f in enumerate(feats):
            targets[i, f.key_targets] = 1.0
        batch["key_targets"] = targets
    else:
        tgt_len = round_up(max(len(f.labels) for f in feats), multiple)
        labels = torch.full((n, tgt_len), -100, dtype=torch.long)
        for i, f in enumerate(feats):
            labels[i, : len(f.labels)] = torch.tensor(f.labels)
        batch["labels"] = labels
    return {k: v.to(device) for k, v in batch.items()}


def batches(feats: Sequence[Features], batch_size: int, shuffle: bool, rng: random.Random | None = None,
            by_length: bool = True) -> Iterator[list[Features]]:
    """Batches of ONE task each. With by_length, samples of similar source length share a batch
    (less padding); the batch order is shuffled when `shuffle`."""
    by_task: dict[str, list[Features]] = {}
    for f in feats:
        by_task.setdefault(f.task, []).append(f)
    out: list[list[Features]] = []
    rng = rng or random.Random(0)
    for task_feats in by_task.values():
        order = list(task_feats)
        if shuffle:
            rng.shuffle(order)
        if by_length:
            # sort inside windows of 50 batches: similar lengths together, still random across windows
            window = batch_size * 50
            order = [f for s in range(0, len(order), window)
                     for f in sorted(order[s:s + window], key=lambda f: len(f.input_ids))]
        out.extend(order[s:s + batch_size] for s in range(0, len(order), batch_size))
    if shuffle:
        rng.shuffle(out)
    return iter(out)
