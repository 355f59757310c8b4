"""The shopper side of a pre-sales dialogue, reusable as a user simulator.

A `Shopper` holds a hidden TARGET item (its knowledge in item_kg.txt form, relation -> values) and
answers like a U-NEED user: it opens with a need, answers staff questions about attributes, and
gives feedback on recommended items. Every method returns (text, annotations) where annotations
are release-format attribute dicts with exact spans (value == text[start:exclusive_end]).

    shopper = Shopper("大家电行业", item.knowledge, rng=random.Random(0), allow_held_out=False)
    text, attrs = shopper.opening()
    text, attrs = shopper.answer(["洗衣机类型"], offered={"洗衣机类型": ["波轮", "滚筒"]})
    text, attrs = shopper.feedback(other_item.knowledge)
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .lexicon import CATEGORY, PRICE, PRICE_BANDS, Lexicon, default_lexicon
from .text import Annotation, Utterance

Reply = tuple[str, list[Annotation]]


@dataclass(frozen=True)
class Need:
    attr: str
    value: str  # canonical value
    negated: bool = False


# clause templates: how a need is said on its own ("{}" = the surface form)
_GENERIC = ("要{}的", "{}的", "想要{}的", "最好是{}的", "{}")
_CLAUSES = {
    "肤质": ("我是{}", "本人{}", "{}", "皮肤是{}"),
    "年龄": ("今年{}", "我{}", "{}"),
    "肌肤问题": ("脸上{}", "最近有点{}", "经常{}", "{}比较严重"),
    "人群": ("给{}用的", "{}能用吗", "{}用"),
    "鞋码": ("平时穿{}", "穿{}", "{}的"),
    "尺码": ("平时穿{}", "穿{}", "{}的"),
    "使用场景": ("平时{}用", "主要{}", "{}用的"),
    "品牌": ("想要{}的", "{}的有吗", "有{}的吗", "{}的"),
    PRICE: ("预算{}", "{}的", "价格{}", "{}"),
    "性别": ("{}的", "{}用的", "给{}买的"),
}
_NEGATED = ("{}的", "最好{}", "{}")
# answers to a question: shorter than free-standing clauses
_ANSWERS = ("{}", "{}的", "{}吧", "{}哦", "要{}的", "{}的就行", "嗯嗯，{}", "{}的哈")
_ANSWER_KIND = {
    "年龄": ("{}", "今年{}", "{}了"),
    "肤质": ("{}", "{}吧", "是{}", "我是{}", "{}的"),
    "鞋码": ("{}", "穿{}", "平时穿{}的", "{}的"),
    "尺码": ("{}", "穿{}", "{}的吧"),
    PRICE: ("{}", "预算{}", "{}吧", "{}的"),
    "肌肤问题": ("{}", "有点{}", "经常{}", "{}比较多"),
    "使用场景": ("{}", "主要{}", "{}用"),
}
_INDIFFERENT = ("都可以", "没什么要求", "这个无所谓", "都行", "随便吧", "没要求哈")
_POSITIVE = ("好的，我看看", "这个可以", "好的谢谢", "有优惠吗", "什么时候发货呢", "可以的，我拍了",
             "好的亲", "嗯嗯，我看一下", "这款不错", "行，就这个吧", "/:^_^", "好的 /:801")
_MORE = ("还有其他款吗", "有没有别的推荐", "还有别的吗", "再推荐一款看看")
_COMPLAIN = {
    "颜色": ("这个颜色不太喜欢", "颜色不好看", "这个颜色一般"),
    "品牌": ("不太喜欢这个牌子", "这个牌子没用过", "这个牌子不太了解"),
    "鞋码": ("这款没有我的码", "码数不太对"),
    "尺码": ("这款没有我的码", "码数不太对"),
}
_COMPLAIN_DEFAULT = ("这个不太合适", "感觉不太适合我", "这款一般", "不太喜欢这款", "这个不行")
_REQUEST = ("有没有{}的", "想要{}的", "要{}的哦", "{}的有吗", "我想要{}的")


class Shopper:
    """A shopper with a hidden target item; see the module docstring.

    knowledge: the target's recorded knowledge (relation -> values, as `uneed.corpus.Item.knowledge`);
    profile: optional extra true knowledge not recorded in the KG (same format), mentioned less often;
    allow_held_out: whether held-out surface forms may be used (False for training dialogues).
    """

    def __init__(self, domain: str, knowledge: dict[str, list[str]], lexicon: Lexicon | None = None,
                 rng: random.Random | None = None, *, profile: dict[str, list[str]] | None = None,
                 allow_held_out: bool = True, noise: float = 0.06, care: float = 0.5):
        self.domain = domain
        self.lex = lexicon or default_lexicon()
        self.rng = rng or random.Random(0)
        self.allow_held_out = allow_held_out
        self.noise = noise
        self.facts = self._facts(knowledge)
        self.unrecorded = {a: v for a, v in self._facts(profile or {}).items() if a not in self.facts}
        truth = dict(self.unrecorded)
        truth.update(self.facts)
        self.truth = truth  # attribute -> canonical values the target really has
        leaf = truth.get(CATEGORY)
        self.leaf = leaf[0] if leaf else None
        self.stated: list[Need] = []
        self.agenda: list[Need] = self._plan(care)

    # ------------------------------------------------------------------ knowledge -> needs
    def _facts(self, knowledge: dict[str, list[str]]) -> dict[str, list[str]]:
        facts: dict[str, list[str]] = {}
        for relation, values in knowledge.items():
            attr = self.lex.attribute_of_relation(self.domain, relation)
            if attr is None:
                continue
            known = self.lex.spec(self.domain).attributes[attr].values
            vals = []
            for v in values:
                if attr == CATEGORY:
                    v = self.lex.leaf_of_name(self.domain, v) or v
                if v in known and v not in vals:
                    vals.append(v)
            if vals:
                facts[attr] = vals
        return facts

    def _applicable(self, attr: str) -> bool:
        spec = self.lex.spec(self.domain).attributes[attr]
        return self.leaf is None or spec.applies_to(self.leaf)

    def _plan(self, care: float) -> list[Need]:
        rng = self.rng
        spec = self.lex.spec(self.domain)
        agenda: list[Need] = []
        if self.leaf and rng.random() < 0.97:
            agenda.append(Need(CATEGORY, self.leaf))
        attrs = [a for a in self.facts if a != CATEGORY]
        rng.shuffle(attrs)
        for a in attrs:
            w = spec.attributes[a].weight
            if rng.random() < min(0.9, care * (0.5 + 0.5 * w)):
                agenda.append(Need(a, rng.choice(self.facts[a])))
        extra = [a for a in self.unrecorded if a != CATEGORY]
        rng.shuffle(extra)
        for a in extra:
            if rng.random() < 0.25:
                agenda.append(Need(a, rng.choice(self.unrecorded[a])))
        negatable = [(a, c) for a in spec.attributes if self._applicable(a)
                     for c in self.lex.negatable(self.domain, a) if c not in self.truth.get(a, ())]
        if negatable and rng.random() < 0.3:
            a, c = rng.choice(negatable)
            agenda.insert(min(len(agenda), 1 + rng.randrange(3)), Need(a, c, True))
        if rng.random() < self.noise:
            wrong = self._noise_need()
            if wrong is not None:
                agenda.insert(rng.randrange(1, len(agenda) + 1) if agenda else 0, wrong)
        return agenda[:7]

    def _noise_need(self) -> Need | None:
        """A need the target does not carry (annotators' and shoppers' noise)."""
        spec = self.lex.spec(self.domain)
        options = [a for a in spec.attributes if a != CATEGORY and self._applicable(a)]
        if not options:
            return None
        a = self.rng.choice(options)
        values = spec.attributes[a].values_for(self.leaf) if self.leaf else list(spec.attributes[a].values)
        wrong = [v for v in values if v not in self.truth.get(a, ())]
        return Need(a, self.rng.choice(wrong)) if wrong else None

    # ------------------------------------------------------------------ surfaces
    def surface(self, need: Need, offered: list[str] | None = None) -> str:
        """A surface form for a need; reuses a form the staff offered when it names the same value."""
        if offered:
            same = [s for s in offered if self.lex.canonical(self.domain, need.attr, s) == (need.value, need.negated)]
            if same and self.rng.random() < 0.75:
                return self.rng.choice(same)
        forms = self.lex.forms(self.domain, need.attr, need.value, self.allow_held_out, need.negated)
        if not forms:
            forms = self.lex.forms(self.domain, need.attr, need.value, True, need.negated) or [need.value]
        return self.rng.choice(forms)

    def _clause(self, u: Utterance, need: Need, templates=None, offered=None) -> None:
        if templates is None:
            templates = _NEGATED if need.negated else _CLAUSES.get(need.attr, _GENERIC)
        surface = self.surface(need, offered)
        template = self.rng.choice(templates)
        after = template.split("{}", 1)[1][:1]
        if after and surface.endswith(after):  # no "学习用用" / "棉的的"
            template = template.replace("{}" + after, "{}", 1)
        u.fill(template, [(need.attr, surface)])
        self.stated.append(need)

    def _pending(self) -> list[Need]:
        return [n for n in self.agenda if n not in self.stated]

    def stated_attrs(self) -> list[str]:
        return [n.attr for n in self.stated]

    def pending_needs(self) -> list[Need]:
        return self._pending()

    # ------------------------------------------------------------------ the three acts
    def opening(self, max_needs: int | None = None) -> Reply:
        """The first need (用户需求): usually the category, sometimes with one or two more needs."""
        rng = self.rng
        u = Utterance()
        pending = self._pending()
        cat = next((n for n in pending if n.attr == CATEGORY), None)
        others = [n for n in pending if n.attr != CATEGORY]
        k = max_needs if max_needs is not None else rng.choice((0, 0, 1, 1, 1, 2, 2, 3))
        k = min(k, len(others))
        chosen = others[:k]
        if rng.random() < 0.12:
            u.say(rng.choice(("你好，", "亲，", "在吗，", "您好 ")))
        if cat is None:
            if not chosen:
                u.say(rng.choice(("有什么推荐的吗", "帮我推荐一款", "想买点东西，有推荐吗")))
                return u.result()
            u.say(rng.choice(("想买个", "帮我推荐一款，", "有没有推荐的，")))
            for i, n in enumerate(chosen):
                if i:
                    u.say("，")
                self._clause(u, n)
            return u.result()
        style = rng.random()
        generic_first = chosen and chosen[0].attr not in _CLAUSES and not chosen[0].negated
        if generic_first and style < 0.45:
            first = chosen[0]
            t = rng.choice(("有没有{}的{}", "推荐一款{}的{}", "{}的{}有推荐的吗", "想买个{}的{}", "帮我推荐一款{}的{}"))
            u.fill(t, [(first.attr, self.surface(first)), (CATEGORY, self.surface(cat))])
            self.stated += [first, cat]
            rest = chosen[1:]
        elif chosen and style < 0.65:
            for n in chosen:
                self._clause(u, n)
                u.say("，")
            t = rng.choice(("想买个{}", "有什么{}推荐吗", "{}有推荐的吗", "帮我推荐一款{}"))
            u.fill(t, [(CATEGORY, self.surface(cat))])
            self.stated.append(cat)
            rest = []
        else:
            t = rng.choice(("{}有推荐的吗", "想买个{}", "我想看看{}", "帮我推荐一款{}", "有没有好用的{}推荐一下",
                            "{}哪款好", "推荐一下{}", "想买{}"))
            u.fill(t, [(CATEGORY, self.surface(cat))])
            self.stated.append(cat)
            rest = chosen
        for n in rest:
            u.say(rng.choice(("，", "，", " ", "，最好")) if not n.negated else "，")
            self._clause(u, n)
        return u.result()

    def answer_parts(self, asked_keys: list[str], offered: dict[str, list[str]] | None = None) -> list[Reply]:
        """One reply per asked attribute (a staff question may be answered over several turns)."""
        rng = self.rng
        out = []
        for key in asked_keys:
            u = Utterance()
            need = self._need_for(key, (offered or {}).get(key))
            if need is None:
                u.say(rng.choice(_INDIFFERENT))
            else:
                templates = _NEGATED if need.negated else _ANSWER_KIND.get(key, _ANSWERS)
                self._clause(u, need, templates, (offered or {}).get(key))
            out.append(u.result())
        return out

    def answer(self, asked_keys: list[str], offered: dict[str, list[str]] | None = None) -> Reply:
        """Answer a staff question about `asked_keys` in one utterance (用户回答)."""
        u = Utterance()
        parts = self.answer_parts(asked_keys, offered)
        informative = [p for p in parts if p[1]] or parts[:1]
        for i, (text, attrs) in enumerate(informative):
            if i:
                u.say(self.rng.choice(("，", " ", "，")))
            part = Utterance()
            part.parts, part.n, part.attrs = [text], len(text), attrs
            u.extend(part)
        return u.result()

    def _need_for(self, key: str, offered: list[str] | None = None) -> Need | None:
        for n in self._pending():
            if n.attr == key:
                return n
        said = {n.value for n in self.stated if n.attr == key}
        if key in self.facts or (key in self.unrecorded and self.rng.random() < 0.8):
            values = [v for v in self.truth[key] if v not in said] or self.truth[key]
            named = [c[0] for c in (self.lex.canonical(self.domain, key, s) for s in offered or ())
                     if c and not c[1] and c[0] in values]
            if named and self.rng.random() < 0.8:
                values = named
            return Need(key, self.rng.choice(values))
        if key == CATEGORY and self.leaf:
            return Need(CATEGORY, self.leaf)
        if key in self.lex.spec(self.domain).attributes and self._applicable(key) and \
                self.rng.random() < self.noise * 3:
            spec = self.lex.spec(self.domain).attributes[key]
            values = spec.values_for(self.leaf) if self.leaf else list(spec.values)
            return Need(key, self.rng.choice(values))
        return None

    def volunteer(self) -> Reply | None:
        """State one more need nobody asked about, or None when nothing is left to say."""
        pending = [n for n in self._pending() if n.attr != CATEGORY]
        if not pending:
            return None
        u = Utterance()
        if self.rng.random() < 0.3:
            u.say(self.rng.choice(("还有，", "对了，", "另外", "哦对，")))
        self._clause(u, pending[0])
        return u.result()

    def satisfied_by(self, knowledge: dict[str, list[str]], profile: dict[str, list[str]] | None = None) -> bool:
        return not self._differences(knowledge, profile)

    def _differences(self, knowledge, profile=None) -> list[str]:
        rec = self._facts(profile or {})
        rec.update(self._facts(knowledge))
        return [a for a, vals in self.truth.items()
                if a != CATEGORY and a in rec and not set(rec[a]) & set(vals)]

    def feedback(self, recommended: dict[str, list[str]], profile: dict[str, list[str]] | None = None) -> Reply:
        """React to a recommended item (用户反馈): a complaint that states a new need, or acceptance."""
        rng = self.rng
        diffs = self._differences(recommended, profile)
        if not diffs:
            return self.positive()
        pending = {n.attr for n in self._pending()}
        stated = {n.attr for n in self.stated}
        diffs.sort(key=lambda a: (a not in pending, a in stated, a not in (PRICE, "颜色", "品牌"), rng.random()))
        attr = diffs[0]
        u = Utterance()
        if attr == PRICE:
            rec_band = (self._facts(recommended).get(PRICE) or self._facts(profile or {}).get(PRICE) or ["中"])[0]
            mine = self.truth[PRICE][0]
            if PRICE_BANDS.index(rec_band) > PRICE_BANDS.index(mine):
                u.say(rng.choice(("这个太贵了", "有点贵了", "超预算了", "价格有点高")))
            else:
                u.say(rng.choice(("这个有点便宜了", "这个价位太低了")))
        else:
            u.say(rng.choice(_COMPLAIN.get(attr, _COMPLAIN_DEFAULT)))
        u.say(rng.choice(("，", "，", " ", "。")))
        need = next((n for n in self._pending() if n.attr == attr), None) or Need(attr, rng.choice(self.truth[attr]))
        self._clause(u, need, _REQUEST)
        return u.result()

    def positive(self) -> Reply:
        """Acceptance, sometimes asking whether the item comes with one more of the target's values."""
        rng = self.rng
        u = Utterance()
        askable = [a for a in ("颜色", "尺码", "鞋码", "内存", "容量") if a in self.truth
                   and a not in self.stated_attrs()]
        if askable and rng.random() < 0.25:
            a = rng.choice(askable)
            u.say(rng.choice(("这款有", "这个有", "有")))
            need = Need(a, rng.choice(self.truth[a]))
            u.span(a, self.surface(need))
            self.stated.append(need)
            u.say(rng.choice(("的吗", "的吗？", "的不")))
            return u.result()
        u.say(rng.choice(_POSITIVE))
        return u.result()

    def more(self) -> Reply:
        return self.rng.choice(_MORE), []
