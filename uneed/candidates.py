"""The 20 recommendation candidates of a recommended item, built as the U-NEED authors did.

Gold item + 19 others: first from the same seller, then from the same 一级类目 when the seller has
too few, then random catalog items; the list is shuffled with a fixed seed. Each list gets its own
random stream derived from (seed, sid, seq_no, position), so a list never depends on load order.
Also the popularity counts of items and the popularity order of a list (the popularity baseline's
ranking, and the order in which the LLM letters candidates).
"""
from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # for annotations only: uneed.corpus imports this module to fill missing lists
    from .corpus import Corpus

NUM_CANDIDATES = 20


class CandidatePools:
    def __init__(self, corpus: Corpus):
        self.by_seller: dict[str, list[str]] = defaultdict(list)
        self.by_category: dict[str, list[str]] = defaultdict(list)
        for item in corpus.items.values():
            self.by_seller[item.seller_id].append(item.item_id)
            if item.category:
                self.by_category[item.category].append(item.item_id)
        self.catalog = list(corpus.items)
        self.items = corpus.items

    def build(self, gold: str, seller_id: str, category: str, rng: random.Random,
              size: int = NUM_CANDIDATES) -> list[str]:
        item = self.items.get(gold)
        if item is not None:  # the knowledge graph knows better than the dialogue
            seller_id, category = item.seller_id, item.category or category
        chosen = [gold]
        taken = {gold}
        for pool in (self.by_seller.get(seller_id, []), self.by_category.get(category, [])):
            need = size - len(chosen)
            if need <= 0:
                break
            fresh = [i for i in pool if i not in taken]
            picked = rng.sample(fresh, min(need, len(fresh)))
            chosen += picked
            taken.update(picked)
        attempts = 0
        while len(chosen) < size and attempts < 50 * size and self.catalog:
            attempts += 1
            other = self.catalog[rng.randrange(len(self.catalog))]
            if other not in taken:
                chosen.append(other)
                taken.add(other)
        rng.shuffle(chosen)
        return chosen


def popularity_counts(samples: Iterable, behaviours: Mapping[str, tuple[list[str], list[str]]]) -> dict[str, float]:
    """log(1 + count) per item over the recommendation samples given (their gold items) and the
    behaviours of their users, as the popularity baseline counts (uneed.baselines)."""
    counts: dict[str, int] = {}
    users = set()
    for s in samples:
        if s.task == "recommend" and s.target:
            counts[s.target] = counts.get(s.target, 0) + 1
        users.add(s.user_id)
    for user in users:
        for item in behaviours.get(user, ([], []))[1]:
            counts[item] = counts.get(item, 0) + 1
    return {i: round(math.log1p(c), 6) for i, c in counts.items()}


def by_popularity(candidates: Sequence[str], counts: Mapping[str, float], shown: Iterable[str] = ()) -> list[str]:
    """Most popular first (ties by id); items in `shown` (recommended earlier in the dialogue) last."""
    seen = set(shown)
    return sorted(candidates, key=lambda i: (i in seen, -counts.get(i, 0), i))


def candidate_rng(seed: int, sid: str, seq_no: int, position: int) -> random.Random:
    return random.Random(f"{seed}:{sid}:{seq_no}:{position}")


def fill_missing_candidates(corpus: Corpus, seed: int = 42) -> int:
    """Give every recommended item without a usable candidate list a built one; return how many were built."""
    pools = CandidatePools(corpus)
    built = 0
    for _split, d in corpus.all_dialogues():
        for turn in d.dialogue:
            if not turn.rec_item_id:
                continue
            lists = list(turn.rec_item_candidates or [])
            changed = False
            for k, gold in enumerate(turn.rec_item_id):
                if k < len(lists) and gold in lists[k]:
                    continue
                info = turn.rec_item_info[k] if k < len(turn.rec_item_info) else ""
                category = info.split("@", 1)[1] if "@" in info else ""
                fresh = pools.build(gold, d.sellerid, category, candidate_rng(seed, d.sid, turn.seq_no, k))
                if k < len(lists):
                    lists[k] = fresh
                else:
                    lists.append(fresh)
                built += 1
                changed = True
            if changed:
                turn.rec_item_candidates = lists
    return built
