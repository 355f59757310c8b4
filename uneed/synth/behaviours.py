"""User behaviours (user_action.txt) that carry a real but noisy signal about a dialogue's target."""
from __future__ import annotations

import bisect
import itertools
import random
from datetime import datetime, timedelta

from .catalog import Seller, SynthItem
from .dialogues import TIME_FORMAT

ACTIONS = ("0", "1", "2", "3")  # view, cart, favourite, buy
ACTION_WEIGHTS = (0.85, 0.06, 0.06, 0.03)
_ACTION_CUM = list(itertools.accumulate(ACTION_WEIGHTS))


class _Pool:
    __slots__ = ("items", "cum")

    def __init__(self, items: list[SynthItem]):
        self.items = items
        self.cum = list(itertools.accumulate(i.weight for i in items))

    def draw(self, rng: random.Random) -> SynthItem:
        return rng.choices(self.items, cum_weights=self.cum)[0]


class BehaviourIndex:
    """Popularity-weighted item pools by seller, leaf, brand and domain."""

    def __init__(self, sellers_by_domain: dict[str, list[Seller]]):
        by: dict[tuple, list[SynthItem]] = {}
        everything = []
        for domain, sellers in sellers_by_domain.items():
            for s in sellers:
                for it in s.items:
                    everything.append(it)
                    for key in (("s", s.seller_id), ("sl", s.seller_id, it.leaf), ("dl", domain, it.leaf),
                                ("db", domain, it.profile["品牌"][0]), ("d", domain)):
                        by.setdefault(key, []).append(it)
        self.pools = {k: _Pool(v) for k, v in by.items()}
        self.everything = _Pool(everything)

    def draw(self, key: tuple, rng: random.Random) -> SynthItem:
        pool = self.pools.get(key)
        return pool.draw(rng) if pool else self.everything.draw(rng)


def user_behaviours(index: BehaviourIndex, user_id: str, seller: Seller, target: SynthItem, start: datetime,
                    first_rec: datetime, n: int, rng: random.Random) -> list[tuple[str, str, str, str, str]]:
    """Rows (seller, user, item, time, action) sorted by time; all strictly before the first recommendation."""
    domain = seller.domain
    brand = target.profile["品牌"][0]
    picks: list[tuple[SynthItem, bool]] = []  # (item, may happen during the dialogue)
    if rng.random() < 0.6:
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            picks.append((target, True))
    while len(picks) < n:
        r = rng.random()
        if r < 0.42:  # related to the target
            q = rng.random()
            if q < 0.35:
                key = ("sl", seller.seller_id, target.leaf)
            elif q < 0.65:
                key = ("dl", domain, target.leaf)
            elif q < 0.85:
                key = ("db", domain, brand)
            else:
                key = ("s", seller.seller_id)
        else:  # noise
            q = rng.random()
            if q < 0.25:
                key = ("s", seller.seller_id)
            elif q < 0.75:
                key = ("d", domain)
            else:
                key = ("*",)
        picks.append((index.draw(key, rng), False))
    rows = []
    during_span = max(1, int((first_rec - start).total_seconds()) - 1)
    for item, hot in picks:
        u = rng.random()
        if u < (0.4 if hot else 0.15):
            when = start + timedelta(seconds=rng.randrange(during_span))
        elif u < (0.6 if hot else 0.35):
            when = start - timedelta(seconds=rng.randint(60, 3 * 3600))
        else:
            when = start - timedelta(seconds=rng.randint(3600, 20 * 86400))
        action = ACTIONS[min(3, bisect.bisect_left(_ACTION_CUM, rng.random()))]
        rows.append((when.strftime(TIME_FORMAT), item.seller_id, item.item_id, action))
    rows.sort()
    return [(s, user_id, i, t, a) for t, s, i, a in rows]
