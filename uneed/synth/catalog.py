"""The synthetic catalog: sellers, items, their true attribute profiles and recorded knowledge tuples.

Knowledge richness is heavy-tailed, as in the release (15 of the 20 candidates printed in the
paper's appendix F carry nothing but a price band): most items record only their 一级类目 and
价格区间; an item's chance of a full record grows with its popularity (and the seller's care), so
the items that get recommended, which are mostly popular ones, carry more. It never depends on
whether an item is a dialogue target. An item's price band follows its leaf category, its brand
and its features (a 老人机 is cheap, a 1TB phone or a 羊绒 coat is not).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from .lexicon import CATEGORY, KG_LEAF, KG_PRICE, KG_TOP, PRICE, PRICE_BANDS, DomainSpec, Lexicon

# leaves that fix 性别 (women's shoes) or make one value likely
_FEMALE_LEAVES = {"高跟鞋", "单鞋", "连衣裙", "半身裙", "口红", "粉底液"}
_RANGE_ATTRS = {"鞋码": (5, 11), "尺码": (2, 4)}  # values that come as consecutive runs

# Price level of a leaf (log scale, 0 = the domain's middle band), of a brand and of premium values.
_LEAF_PRICE = {"老年机": -2.0, "平板电脑": 0.2, "游戏手机": 0.5, "洗碗机": 0.6, "油烟机": 0.3, "冰箱": 0.4, "电视": 0.4,
               "热水器": -0.6, "烘干机": 0.5, "空调": 0.2, "羽绒服": 0.7, "外套": 0.3, "毛衣": 0.2, "内裤": -1.2,
               "T恤": -0.8, "睡衣": -0.5, "保暖内衣": -0.4, "皮鞋": 0.6, "靴子": 0.4, "拖鞋": -1.5, "帆布鞋": -0.8,
               "篮球鞋": 0.5, "口红": 0.2, "面膜": -0.6, "洁面": -0.8, "卸妆": -0.6, "精华": 0.6, "眼霜": 0.5, "套装": 0.7}
_BRAND_PRICE = {"兰蔻": 1.0, "雅诗兰黛": 1.0, "资生堂": 0.7, "科颜氏": 0.7, "百雀羚": -0.7, "自然堂": -0.4,
                "完美日记": -0.5, "苹果": 1.2, "三星": 0.6, "华为": 0.5, "红米": -0.8, "真我": -0.5, "西门子": 0.8,
                "松下": 0.4, "方太": 0.7, "TCL": -0.4, "小米": -0.3, "波司登": 0.8, "南极人": -0.8, "优衣库": -0.2,
                "猫人": -0.5, "耐克": 0.7, "阿迪达斯": 0.6, "回力": -1.0, "百丽": 0.4, "鸿星尔克": -0.5}
_VALUE_PRICE = {"1TB": 1.0, "512GB": 0.6, "64GB": -0.6, "16GB": 0.6, "12GB": 0.3, "4GB": -0.6, "2亿": 0.8, "1亿": 0.4,
                "折叠屏": 1.5, "曲面屏": 0.3, "羊绒": 1.0, "真丝": 0.9, "羊毛": 0.5, "白鸭绒": 0.4, "聚酯纤维": -0.5,
                "真皮": 0.6, "帆布": -0.4, "一级能效": 0.3, "三级能效": -0.4, "洗烘一体": 0.8, "双缸": -1.0,
                "十字对开门": 0.8, "对开门": 0.5, "单门": -1.0, "OLED": 1.0, "MiniLED": 0.7, "85英寸": 0.8,
                "100英寸": 1.2, "32英寸": -1.0, "3匹": 0.7, "视黄醇": 0.3, "玻尿酸": 0.1}


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
    care: float  # scales an item's chance of a full knowledge record
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


def _price_band(leaf: str, profile: dict[str, list[str]], bias: list[float], rng: random.Random) -> str:
    """The band follows the leaf, the brand and the premium features, plus the seller's bias and noise."""
    level = _LEAF_PRICE.get(leaf, 0.0) + _BRAND_PRICE.get(profile["品牌"][0], 0.0)
    level += sum(_VALUE_PRICE.get(v, 0.0) for a, vals in profile.items() if a != "品牌" for v in vals)
    level += 0.6 * (bias[2] - bias[0]) + rng.gauss(0.0, 0.45)
    return PRICE_BANDS[0] if level < -0.45 else PRICE_BANDS[2] if level > 0.55 else PRICE_BANDS[1]


def _item_profile(spec: DomainSpec, leaf: str, brand: str, rng: random.Random) -> dict[str, list[str]]:
    """The item's true properties; its price band (PRICE) is added from them by _price_band."""
    profile: dict[str, list[str]] = {CATEGORY: [leaf], "品牌": [brand]}
    for name, attr in spec.attributes.items():
        if name in profile or name == PRICE or not attr.applies_to(leaf):
            continue
        values = attr.values_for(leaf)
        if name == "性别" or (name == "人群" and "男" in attr.values):  # Shoes write gender under 人群
            gender = "女" if leaf in _FEMALE_LEAVES or (spec.name == "美妆行业" and rng.random() < 0.8) else \
                rng.choice(["男", "女"])
            if name == "人群":
                groups = [v for v in values if v not in ("男", "女")]
                profile[name] = [gender] + ([rng.choice(groups)] if groups and rng.random() < 0.3 else [])
            elif leaf in _FEMALE_LEAVES or spec.name == "美妆行业" or rng.random() < 0.85:
                profile[name] = [gender]
            continue
        if name in _RANGE_ATTRS:
            lo, hi = _RANGE_ATTRS[name]
            run = min(len(values), rng.randint(lo, hi))
            start = rng.randrange(len(values) - run + 1)
            profile[name] = values[start:start + run]
            continue
        if name in ("人群", "年龄") and rng.random() < 0.5:
            continue  # many items are for anyone
        if name == "人群" and profile.get("性别") == ["男"]:
            values = [v for v in values if v != "孕妇"]
        k = 1
        while k < min(attr.multi, len(values)) and rng.random() < 0.45:
            k += 1
        profile[name] = rng.sample(values, k)
    return profile


def _record(spec: DomainSpec, seller: Seller, leaf: str, profile: dict[str, list[str]], popularity: float,
            rng: random.Random) -> dict[str, list[str]]:
    """The subset of the profile written to item_kg.txt: for most items only the price band; a full
    record with a chance that grows with the item's popularity and the seller's care."""
    kg: dict[str, list[str]] = {KG_TOP: [spec.code_of(leaf)]}
    if rng.random() < 0.97:
        kg[KG_PRICE] = list(profile[PRICE])
    if rng.random() > min(0.95, seller.care * popularity ** 2):
        return kg
    if rng.random() < seller.p_brand:
        kg["品牌"] = list(profile["品牌"])
    optional = [a for a in profile if a not in (CATEGORY, PRICE, "品牌")]
    k = int(seller.richness + 7 + rng.uniform(-1.6, 1.6))
    k = max(0, min(len(optional), k))
    if k:
        chosen = set(rng.sample(optional, k))
        for a in optional:  # schema order
            if a in chosen:
                kg[spec.attributes[a].kg_relation] = profile[a][:6]
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
            # the first hosts take the leaves in turn, so that every leaf category has dialogues
            main = leaves[s_index] if s_index < min(n_host, len(leaves)) else rng.choices(leaves, weights=weights)[0]
            second = rng.choices(leaves, weights=weights)[0]
            seller_leaves = [main] if rng.random() < 0.55 or second == main else [main, second]
            by_leaf = spec.brands_by_leaf.get(main, brand_values)
            brands = rng.sample(by_leaf, 1 if rng.random() < 0.5 else min(len(by_leaf), rng.randint(2, 4)))
            bias = [rng.uniform(0.2, 1.0) for _ in PRICE_BANDS]
            if hosting:
                richness, p_leaf, p_brand = rng.uniform(3.5, 7.5), rng.uniform(0.8, 0.98), rng.uniform(0.6, 0.9)
                care = rng.uniform(0.09, 0.17)
            elif rng.random() < 0.15:
                richness, p_leaf, p_brand = rng.uniform(1.0, 3.5), rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.6)
                care = rng.uniform(0.07, 0.13)
            else:
                richness, p_leaf, p_brand = rng.uniform(0.0, 0.7), rng.uniform(0.05, 0.3), rng.uniform(0.0, 0.2)
                care = rng.uniform(0.055, 0.12)
            seller = Seller(ids.account(), domain, seller_leaves, brands, bias, richness, care, p_leaf, p_brand,
                            hosting)
            for _ in range(size):
                leaf = seller_leaves[0] if len(seller_leaves) == 1 or rng.random() < 0.7 else seller_leaves[1]
                brand = rng.choice(brands)
                profile = _item_profile(spec, leaf, brand, rng)
                profile[PRICE] = [_price_band(leaf, profile, bias, rng)]
                popularity = rng.lognormvariate(0.0, 1.0)
                kg = _record(spec, seller, leaf, profile, popularity, rng)
                item = SynthItem(ids.item(), seller.seller_id, domain, leaf, spec.code_of(leaf), profile, kg,
                                 popularity)
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
