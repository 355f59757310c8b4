"""The synthetic catalog: sellers, items, their true attribute profiles and recorded knowledge tuples.

Knowledge richness is a property of the seller (sellers that host dialogues record more knowledge
for all their items), never of whether an item is a dialogue target, so the 20 candidates drawn
from a target's seller look alike.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from .lexicon import CATEGORY, KG_LEAF, KG_PRICE, KG_TOP, PRICE, PRICE_BANDS, DomainSpec, Lexicon

# leaves that fix 性别 (women's shoes) or make one value likely
_FEMALE_LEAVES = {"高跟鞋", "单鞋", "连衣裙", "半身裙", "口红", "粉底液"}
_RANGE_ATTRS = {"鞋码": (3, 6), "尺码": (2, 4)}  # values that come as consecutive runs


@dataclass
class SynthItem:
    item_id: str
    seller_id: str
    domain: str
    leaf: str
    code: str
    profile: dict[str, list[str]]  # dialogue attribute -> canonical values (the item's true properties)
    kg: dict[str, list[str]]  # relation -> values, as recorded in item_kg.txt (row order)
    weight: float  # popularity


@dataclass
class Seller:
    seller_id: str
    domain: str
    leaves: list[str]
    brands: list[str]
    price_bias: list[float]
    richness: float
    p_leaf: float
    p_brand: float
    hosting: bool
    items: list[SynthItem] = field(default_factory=list)


class IdFactory:
    """Unique numeric id strings in the shapes of the release (item 11-12 digits, seller/user 9-13)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def _fresh(self, make) -> str:
        while True:
            s = make()
            if s not in self.used:
                self.used.add(s)
                return s

    def item(self) -> str:
        r = self.rng
        if r.random() < 0.8:
            return self._fresh(lambda: str(r.randint(520_000_000_000, 699_999_999_999)))
        return self._fresh(lambda: str(r.randint(10_000_000_000, 29_999_999_999)))

    def account(self) -> str:
        r = self.rng
        if r.random() < 0.35:
            return self._fresh(lambda: str(r.randint(2_200_000_000_000, 2_215_999_999_999)))
        return self._fresh(lambda: str(r.randint(100_000_000, 3_999_999_999)))


def _item_profile(spec: DomainSpec, leaf: str, brand: str, band: str, rng: random.Random) -> dict[str, list[str]]:
    profile: dict[str, list[str]] = {CATEGORY: [leaf], PRICE: [band], "品牌": [brand]}
    for name, attr in spec.attributes.items():
        if name in profile or not attr.applies_to(leaf):
            continue
        values = attr.values_for(leaf)
        if name == "性别":
            if leaf in _FEMALE_LEAVES:
                profile[name] = ["女"]
            elif spec.name == "美妆行业":
                profile[name] = ["女"] if rng.random() < 0.8 else ["男"]
            elif rng.random() < 0.85:
                profile[name] = [rng.choice(values)]
            continue
        if name in _RANGE_ATTRS:
            lo, hi = _RANGE_ATTRS[name]
            run = min(len(values), rng.randint(lo, hi))
            start = rng.randrange(len(values) - run + 1)
            profile[name] = values[start:start + run]
            continue
        if name in ("人群", "年龄") and rng.random() < 0.5:
            continue  # many items are for anyone
        k = 1
        while k < min(attr.multi, len(values)) and rng.random() < 0.45:
            k += 1
        profile[name] = rng.sample(values, k)
    return profile


def _record(spec: DomainSpec, seller: Seller, leaf: str, profile: dict[str, list[str]],
            rng: random.Random) -> dict[str, list[str]]:
    """The subset of the profile written to item_kg.txt; how much depends on the seller only."""
    kg: dict[str, list[str]] = {KG_TOP: [spec.code_of(leaf)]}
    if rng.random() < 0.97:
        kg[KG_PRICE] = list(profile[PRICE])
    if rng.random() < seller.p_brand:
        kg["品牌"] = list(profile["品牌"])
    optional = [a for a in profile if a not in (CATEGORY, PRICE, "品牌")]
    k = int(seller.richness + rng.uniform(-1.6, 1.6))
    k = max(0, min(len(optional), k))
    if k:
        chosen = set(rng.sample(optional, k))
        for a in optional:  # schema order
            if a in chosen:
                kg[spec.attributes[a].kg_relation] = profile[a][:3]
    if rng.random() < seller.p_leaf:
        kg[KG_LEAF] = [spec.leaf_names[leaf]]
    return kg


def build_catalog(lex: Lexicon, domain_items: dict[str, int], hosting_per_domain: dict[str, int],
                  hosting_share: float, ids: IdFactory, rng: random.Random,
                  small_sellers: tuple[int, int] = (10, 300)) -> dict[str, list[Seller]]:
    """Sellers (with their items) per domain; hosting sellers come first in each list."""
    out: dict[str, list[Seller]] = {}
    for domain, n_items in domain_items.items():
        spec = lex.spec(domain)
        brand_values = list(spec.attributes["品牌"].values)
        leaves = spec.leaves
        n_host = hosting_per_domain[domain]
        host_total = max(int(n_items * hosting_share), 25 * n_host)
        shares = [rng.uniform(0.4, 1.6) for _ in range(n_host)]
        total_share = sum(shares)
        sizes = [max(25, int(host_total * s / total_share)) for s in shares]
        rest = max(0, n_items - sum(sizes))
        while rest > 0:
            lo, hi = small_sellers
            size = min(rest, max(lo, int(rng.lognormvariate(4.3, 0.8))), hi)
            if rest - size < lo:
                size = rest
            sizes.append(size)
            rest -= size
        sellers = []
        for s_index, size in enumerate(sizes):
            hosting = s_index < n_host
            weights = [spec.leaf_weight(leaf) for leaf in leaves]
            main = rng.choices(leaves, weights=weights)[0]
            second = rng.choices(leaves, weights=weights)[0]
            seller_leaves = [main] if rng.random() < 0.55 or second == main else [main, second]
            by_leaf = spec.brands_by_leaf.get(main, brand_values)
            brands = rng.sample(by_leaf, 1 if rng.random() < 0.5 else min(len(by_leaf), rng.randint(2, 4)))
            bias = [rng.uniform(0.2, 1.0) for _ in PRICE_BANDS]
            if hosting:
                richness, p_leaf, p_brand = rng.uniform(3.5, 7.5), rng.uniform(0.8, 0.98), rng.uniform(0.6, 0.9)
            elif rng.random() < 0.15:
                richness, p_leaf, p_brand = rng.uniform(1.0, 3.5), rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.6)
            else:
                richness, p_leaf, p_brand = rng.uniform(0.0, 0.7), rng.uniform(0.05, 0.3), rng.uniform(0.0, 0.2)
            seller = Seller(ids.account(), domain, seller_leaves, brands, bias, richness, p_leaf, p_brand, hosting)
            for _ in range(size):
                leaf = seller_leaves[0] if len(seller_leaves) == 1 or rng.random() < 0.7 else seller_leaves[1]
                brand = rng.choice(brands)
                band = rng.choices(PRICE_BANDS, weights=bias)[0]
                profile = _item_profile(spec, leaf, brand, band, rng)
                kg = _record(spec, seller, leaf, profile, rng)
                item = SynthItem(ids.item(), seller.seller_id, domain, leaf, spec.code_of(leaf), profile, kg,
                                 rng.lognormvariate(0.0, 1.0))
                seller.items.append(item)
            sellers.append(seller)
        out[domain] = sellers
    return out


def kg_rows(sellers_by_domain: dict[str, list[Seller]], rng: random.Random):
    """item_kg.txt rows, sellers in a shuffled order, each item's relations in record order."""
    sellers = [s for ss in sellers_by_domain.values() for s in ss]
    rng.shuffle(sellers)
    for seller in sellers:
        for item in seller.items:
            for relation, values in item.kg.items():
                for v in values:
                    yield item.item_id, item.seller_id, relation, v
