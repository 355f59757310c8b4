"""How well an item's knowledge answers the needs stated so far: the features of the CRS's learned
needs bonus (crs/heads.py) and of the gold-needs reference rule of `presales data baselines`."""
from __future__ import annotations

from typing import Iterable, Sequence

MATCH_FEATURES = 4


class ItemValues:
    """An item's knowledge values as match_features reads them, prepared once: a CRS ranks a whole
    category's items against the needs on every turn (profiled: the features were a fifth of a
    replayed turn of graph 2 when each call rebuilt these)."""

    __slots__ = ("exact", "long", "chars")

    def __init__(self, values: Iterable[str]):
        unique = [v for v in dict.fromkeys(values) if v]
        self.exact = frozenset(unique)
        self.long = tuple(v for v in unique if len(v) >= 2)
        self.chars = tuple(frozenset(v) for v in unique)


def match_features(needs: Sequence[tuple[str, str]], item_values: Iterable[str] | ItemValues) -> list[float]:
    """How well an item's knowledge values answer the needs' values: the number of needs whose value
    equals an item value, is contained in one or contains one (values of two or more characters),
    the summed best share of the value's characters found in one item value, and that sum over the
    number of valued needs."""
    item = item_values if isinstance(item_values, ItemValues) else ItemValues(item_values)
    exact = contained = 0
    share = 0.0
    n = 0
    for _, need in needs:
        if not need:
            continue
        n += 1
        exact += need in item.exact
        contained += any(need in v or v in need for v in item.long)
        chars = set(need)
        share += max((len(chars & c) for c in item.chars), default=0) / len(chars)
    return [float(exact), float(contained), share, share / n if n else 0.0]
