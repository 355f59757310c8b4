"""The customer-service side of a synthetic pre-sales dialogue: questions, recommendations, explanations."""
from __future__ import annotations

import random

from .lexicon import CATEGORY, KG_LEAF, KG_TOP, PRICE, Lexicon
from .text import Utterance

Reply = tuple[str, list[dict]]

EMOTICONS = ("/:065", "/:^_^", "/:801", "/:809", "/:-F", "/:Y", "/:081", "/:066")
_PREFIX = ("", "", "", "亲，", "亲亲", "好的亲，", "亲亲，", "嗯嗯，")
_SUFFIX = ("", "", "", "~", "", "呢")
_CHOICE = {
    1: ("是{}吗", "亲亲是{}吗", "需要{}的吗", "要{}的吗", "考虑{}的吗"),
    2: ("您是{}还是{}呢", "{}还是{}呢", "请问要{}还是{}的呢", "喜欢{}还是{}呢", "{}或者{}可以吗"),
    3: ("{}、{}还是{}呢", "请问是{}，{}，还是{}呢", "{}、{}、{}哪种呢", "您是{}，{}还是{}呢"),
}
_GREET = ("亲在的呢", "在的亲，请问有什么可以帮您", "您好，欢迎光临 /:^_^", "亲亲在的哦", "在的呢亲",
          "您好，很高兴为您服务")
_FILLER = ("好的亲，稍等哦", "好的呢，这边给您推荐几款哦", "收到，马上为您推荐", "好的亲，我帮您看一下",
           "明白了亲，稍等", "好的呢亲")
_CLOSING = ("好的亲，有问题随时联系哦", "感谢您的咨询，祝您购物愉快 /:801", "亲亲有需要再找我哦",
            "好的呢，期待您的光临 /:^_^")
_REC_TEXT = ("亲，可以看下这款哦", "这款很适合您呢", "给您推荐这款", "亲亲看看这个", "这款卖得很好哦",
             "推荐您这款哈", "这款可以考虑下")
_PROSE = {
    "品牌": ("是{}家的", "{}的品质有保障"),
    "功效": ("主打{}", "{}效果很好", "能够{}"),
    "肤质": ("适合{}肌肤使用", "{}肌肤也可以放心用"),
    "肌肤问题": ("能改善{}问题", "对{}有帮助"),
    "成分": ("添加了{}", "含有{}成分"),
    "人群": ("{}也可以用", "很适合{}"),
    "年龄": ("适合{}使用",),
    "材质": ("采用{}面料", "{}材质，穿着舒服"),
    "季节": ("适合{}季穿",),
    "款式": ("{}设计", "{}版型"),
    "颜色": ("有{}可选", "{}很百搭"),
    "尺码": ("{}都有货",),
    "鞋码": ("{}码都有货",),
    "服装厚度": ("{}，",),
    "功能需求": ("{}", "支持{}", "{}方面做得很好"),
    "使用场景": ("适合{}", "{}都很合适"),
    "洗涤重量": ("{}大容量", "容量{}"),
    "洗衣机类型": ("{}洗衣机",),
    "能效等级": ("{}，更省电",),
    "容量": ("容量{}",),
    "空调匹数": ("{}",),
    "冰箱类型": ("{}设计",),
    "屏幕尺寸": ("{}大屏",),
    "屏幕类型": ("屏幕是{}，画质清晰", "采用{}"),
    "内存": ("{}大内存", "存储{}"),
    "运行内存": ("运行内存{}，不卡顿",),
    "像素": ("{}像素，拍照清晰",),
    "鞋底材质": ("{}鞋底，防滑耐磨", "{}大底"),
    "跟高": ("{}，走路不累",),
    PRICE: (),
}
_CLOSE_PROSE = ("，很适合您哦", "，性价比很高的呢", "，亲亲可以放心入手哦 /:^_^", "，现在下单还有赠品哦", "。",
                "，回购率很高的", "")


class Staff:
    def __init__(self, domain: str, lexicon: Lexicon, rng: random.Random, allow_held_out: bool = True):
        self.domain = domain
        self.lex = lexicon
        self.rng = rng
        self.allow_held_out = allow_held_out

    def greet(self) -> Reply:
        return self.rng.choice(_GREET), []

    def filler(self) -> Reply:
        return self.rng.choice(_FILLER), []

    def closing(self) -> Reply:
        return self.rng.choice(_CLOSING), []

    def choose_attrs(self, leaf: str | None, target: dict[str, list[str]], exclude: set[str], k: int) -> list[str]:
        """Attributes to ask about: those that fit the leaf, mostly ones the target carries."""
        spec = self.lex.spec(self.domain)
        pool = [a for a, s in spec.attributes.items()
                if a not in exclude and (leaf is None or s.applies_to(leaf)) and (a != CATEGORY or leaf is None)]
        chosen = []
        for _ in range(k):
            if not pool:
                break
            known = [a for a in pool if a in target]
            cands = known if known and self.rng.random() < 0.75 else pool
            weights = [spec.attributes[a].weight for a in cands]
            a = self.rng.choices(cands, weights=weights)[0]
            chosen.append(a)
            pool.remove(a)
        return chosen

    def ask(self, attrs: list[str], leaf: str | None, target: dict[str, list[str]]) -> tuple[str, list[dict], dict]:
        """A question (系统提问) about `attrs`; returns (text, annotations, offered surfaces per attribute)."""
        rng = self.rng
        spec = self.lex.spec(self.domain)
        u = Utterance()
        offered: dict[str, list[str]] = {}
        u.say(rng.choice(_PREFIX))
        for i, a in enumerate(attrs):
            if i:
                u.say(rng.choice(("，", "，", "，还有", "，另外")))
            aspec = spec.attributes[a]
            values = aspec.values_for(leaf) if leaf else list(aspec.values)
            if a == CATEGORY and not leaf:
                values = list(aspec.values)
            if (rng.random() < 0.45 or not aspec.asks) and len(values) >= 1:
                n = min(len(values), rng.choice((1, 2, 2, 2, 3)))
                shown = list(target.get(a, ()))[:1] if rng.random() < 0.7 else []
                others = [v for v in values if v not in shown]
                shown += rng.sample(others, min(len(others), n - len(shown)))
                rng.shuffle(shown)
                surfaces = []
                for v in shown:
                    forms = self.lex.forms(self.domain, a, v, self.allow_held_out) or [v]
                    surfaces.append(rng.choice(forms))
                offered[a] = surfaces
                u.fill(rng.choice(_CHOICE[len(surfaces)]), [(a, s) for s in surfaces])
            else:
                u.say(rng.choice(aspec.asks))
                u.asked(a)
        if not u.text.endswith(("呢", "吗", "~", "哦")):
            u.say(rng.choice(_SUFFIX))
        if rng.random() < 0.15:
            u.say(rng.choice(EMOTICONS))
        text, attrs_out = u.result()
        return text, attrs_out, offered

    def recommend_text(self) -> str:
        from ..schema import LINK_ONLY

        if self.rng.random() < 0.72:
            return LINK_ONLY
        text = self.rng.choice(_REC_TEXT)
        if self.rng.random() < 0.3:
            text += self.rng.choice(EMOTICONS)
        return text

    def explain(self, knowledge: dict[str, list[str]], leaf_name: str | None = None) -> Reply:
        """A prose explanation (系统解释) of an item's knowledge; not annotated, as in the release."""
        rng = self.rng
        items = [(r, v) for r, v in knowledge.items() if r not in (KG_TOP, KG_LEAF, "价格区间") and v]
        rng.shuffle(items)
        items = items[:rng.randint(2, 4)]
        phrases = []
        for relation, values in items:
            vals = "、".join(values[:3])
            templates = _PROSE.get(relation) or ("{}是{}",)
            t = rng.choice(templates) if templates else None
            if t is None:
                continue
            phrases.append(t.format(relation, vals) if t.count("{}") == 2 else t.format(vals))
        phrases = [p.rstrip("，") for p in phrases if p]
        if not phrases:
            phrases = [rng.choice(("质量很好", "做工精细", "销量很高", "好评很多"))]
        head = f"这款{leaf_name}" if leaf_name and rng.random() < 0.6 else rng.choice(("这款", "这个", "亲，这款"))
        if rng.random() < 0.25 and len(phrases) > 1:
            marks = "①②③④"
            body = "".join(f"{marks[i]}{p}；" for i, p in enumerate(phrases)).rstrip("；")
            return f"{head}：{body}{rng.choice(_CLOSE_PROSE)}", []
        return head + "，".join(phrases) + rng.choice(_CLOSE_PROSE), []
