"""How well an item's knowledge answers the needs stated so far: the features of the CRS's learned
needs bonus (crs/heads.py) and of the gold-needs reference rule of `presales data baselines`."""
from __future__ import annotations

from typing import Iterable, Sequence

MATCH_FEATURES = 4


def match_features(needs: Sequence[tuple[str, str]], item_values: Iterable[str]) -> list[float]:
    """How well an item's knowledge values answer the needs' values: the number of needs whose value
    equals an item value, is contained in one or contains one, the summed best share of the value's
    characters found in one item value, and that sum over the number of valued needs."""
    values = [v for v in dict.fromkeys(item_values) if v]
    exact = contained = 0
    share = 0.0
    n = 0
    for _, need in needs:
        if not need:
            continue
        n += 1
        if need in values:
            exact += 1
        if any(len(v) >= 2 and (need in v or v in need) for v in values):
            contained += 1
        chars = set(need)
        share += max((len(chars & set(v)) / len(chars) for v in values), default=0.0)
    return [float(exact), float(contained), share, share / n if n else 0.0]
