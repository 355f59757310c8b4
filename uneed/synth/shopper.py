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


# What kind of need an attribute is: picks the phrasings below.
_KIND = {CATEGORY: "category", "肤质": "skin", "肌肤问题": "issue", "年龄": "age", "性别": "people", "人群": "people",
         "鞋码": "size", "尺码": "size", PRICE: "price", "品牌": "brand", "颜色": "color", "使用场景": "scene",
         "功能需求": "function", "功效": "function", "季节": "season"}

# How a need is said inside an opening or a request ("{}" = the surface form; "{v}" = 用/穿).
_CLAUSES = {
    "generic": ("要{}的", "{}的", "想要{}的", "最好是{}的", "{}的那种", "喜欢{}的", "要那种{}的", "{}的会好点",
                "想找{}的", "{}的比较好"),
    "skin": ("我是{}", "本人{}", "我{}", "皮肤是{}", "我属于{}", "自己是{}"),
    "issue": ("脸上{}", "最近有点{}", "经常{}", "{}比较严重", "鼻子{}", "换季的时候{}", "额头{}", "两颊有点{}",
              "熬夜就{}", "一直{}", "{}挺困扰的", "脸颊{}"),
    "age": ("今年{}", "我{}", "{}了", "本人{}", "年龄{}"),
    "people": ("给{}{v}的", "{}能{v}吗", "{}{v}", "给{}买的", "帮{}看的", "想给{}买", "是{}{v}的", "{}要{v}"),
    "size": ("平时穿{}", "穿{}", "{}的", "一般穿{}的", "{}的码", "我穿{}"),
    "price": ("预算{}", "{}的", "价格{}", "预算在{}", "{}就行", "心理价位{}", "价位{}", "{}吧"),
    "brand": ("想要{}的", "{}的有吗", "有{}的吗", "{}的", "比较喜欢{}", "之前一直用{}的", "{}家的", "最好是{}的"),
    "color": ("要{}的", "{}的", "喜欢{}", "想要{}", "{}的好看点", "颜色{}的"),
    "scene": ("平时{}{v}", "主要{}", "{}{v}的", "主要是{}", "一般就{}", "拿来{}"),
    "function": ("要{}的", "{}的", "最好{}", "主要想要{}", "看重{}", "{}这块比较看重", "希望{}", "{}很重要"),
    "season": ("{}{v}", "{}{v}的", "打算{}{v}", "{}的"),
    "place": ("主要是{}", "是{}", "主要{}", "{}的话"),
    "category": ("{}",),
}
_NEGATED = ("{}的", "最好{}", "{}", "{}哈", "{}的啊")
# Answers to a question: shorter than free-standing clauses, often hedged.
_ANSWERS = {
    "generic": ("{}", "{}的", "{}吧", "要{}的", "{}的就行", "{}的那种", "就是{}的那种", "{}的比较好", "选{}的吧",
                "想要{}的", "{}的吧，之前用过", "倾向{}的", "{}的好一点", "还是{}的吧"),
    "skin": ("{}", "{}吧", "是{}", "我是{}", "属于{}", "算是{}吧", "{}的", "应该是{}", "一直是{}", "{}，冬天更明显"),
    "issue": ("{}", "有点{}", "经常{}", "鼻子{}", "好像晒太阳后会{}", "换季的时候会{}", "熬夜之后就{}",
              "最近{}比较严重", "额头和下巴容易{}", "一直有{}的问题", "{}挺困扰的", "两颊{}", "脸上偶尔{}"),
    "age": ("{}", "今年{}", "{}了", "刚{}", "我{}", "{}吧"),
    "people": ("{}", "{}的", "给{}{v}的", "{}{v}", "是{}{v}的", "帮{}买", "{}要{v}"),
    "size": ("{}", "穿{}", "平时穿{}的", "{}的", "一般穿{}", "{}吧", "{}的吧，脚背有点高", "{}的就行"),
    "price": ("{}", "预算{}", "{}吧", "{}的", "{}就行", "预算在{}", "{}的话有吗"),
    "brand": ("{}", "{}的", "{}吧", "喜欢{}", "{}的就行", "之前用的{}", "{}家的", "比较信{}"),
    "color": ("{}", "{}的", "{}吧", "要{}", "喜欢{}的", "{}的好看", "{}的耐脏"),
    "scene": ("{}", "主要{}", "{}{v}", "平时{}{v}", "主要是{}", "一般{}", "就{}{v}"),
    "function": ("{}", "{}的", "要{}的", "{}吧", "主要{}", "最好{}", "{}很重要", "比较看重{}", "{}就行"),
    "season": ("{}", "{}{v}", "{}{v}的", "{}的吧", "主要{}{v}"),
    "place": ("{}", "主要是{}", "是{}", "{}吧", "主要{}"),
    "category": ("{}", "{}吧", "看看{}", "想看{}", "{}的"),
}
# Requests in feedback for needs about the person rather than the item.
_REQUEST_KIND = {
    "age": ("我{}，有适合的吗", "适合{}的有没有", "{}用的有吗", "我今年{}，这个合适吗"),
    "skin": ("我是{}，有适合的吗", "适合{}的有吗", "{}能用的有没有"),
    "issue": ("我{}，有针对的吗", "有没有改善{}的", "{}的话用哪款好"),
    "people": ("给{}{v}的有吗", "适合{}的有没有", "有没有{}能{v}的"),
    "size": ("有{}的吗", "这款有没有{}的", "{}的还有吗"),
}
_GENDER_REQUEST = ("有{}款的吗", "{}士用的有吗", "有没有{}生{v}的", "要{}款的", "{}生{v}的有吗")
_GENDER = ("{}款的", "{}士的", "{}生{v}的", "要{}款", "{}的", "给{}生买的", "{}生的")
# Questions about the person, answered with a value even when the item does not record one.
_PERSONAL = ("年龄", "肤质", "鞋码", "尺码", "性别")
_HEDGE = ("", "", "", "", "嗯，", "嗯嗯，", "就是", "应该是", "感觉", "哦，", "是的，", "对，", "额，", "那个，")
# What users add after an answer or a request: context that names no attribute value.
_TAILS = ("，之前买过一次觉得还行", "，主要是家里要用", "，别的没什么要求", "，其他的你看着推荐", "，麻烦帮我看看",
          "，有合适的发我看看", "，这个比较重要", "，之前那个用坏了", "，别太复杂就行", "，你们家有吗", "，谢谢",
          "，能推荐下吗", "，看着给推荐吧", "，最好有活动的", "，这个我比较在意", "，其他都好说", "，之前用的就是这种",
          "，朋友推荐的", "，怕买错了", "，不太懂这些", "，第一次买", "，急用", "，想这周就能到", "，帮我挑一下",
          "，上次买的不太满意", "，对比了好几家了", "，看了好久了", "，你们这边有推荐的吗", "，最好是新款",
          "，送人也行", "，想买个靠谱点的", "，别踩雷就行", "，之前在你们家买过", "，不想退换货",
          "，要正品哈", "，快递能快点吗", "，主要是自己平时用", "，不着急，慢慢挑",
          "，有什么区别吗", "，你推荐哪个", "，怎么选比较好", "，麻烦了", "，辛苦")
_INDIFFERENT = ("都可以", "没什么要求", "这个无所谓", "都行", "随便吧", "没要求哈", "这个没想好", "你们推荐就行",
                "不太懂，你看着推荐吧", "都可以的，主要看口碑", "这个倒没什么讲究", "没特别要求")
_OPEN_LEAD = ("", "", "", "", "你好，", "在吗，", "亲，", "您好，", "老板，", "想问下，", "麻烦推荐下，",
              "帮忙看看，", "你好 ")
_OPEN_CATEGORY = ("{}有推荐的吗", "想买个{}", "我想看看{}", "帮我推荐一款{}", "有没有好用的{}推荐一下", "{}哪款好",
                  "推荐一下{}", "想买{}", "{}有什么推荐", "想入一个{}", "看下{}", "{}买哪款好呢", "想给家里换个{}",
                  "你们家{}哪款卖得好")
_OPEN_WITH = ("有没有{}的{}", "推荐一款{}的{}", "{}的{}有推荐的吗", "想买个{}的{}", "帮我推荐一款{}的{}",
              "想要{}的{}", "有{}的{}吗", "找一款{}的{}")
_OPEN_TAIL = ("", "", "", "，谢谢", "，求推荐", "，哪款好", "，麻烦推荐一下", "，有吗", "，帮忙推荐下")
_REACTION = {
    PRICE: {"高": ("这个太贵了", "有点贵了", "超预算了", "价格有点高", "这款贵了点", "价格超了"),
            "低": ("这个有点便宜了", "这个价位太低了", "这个是不是太便宜了", "想要好一点的")},
    "颜色": ("这个颜色不太喜欢", "颜色不好看", "这个颜色一般", "颜色不太行"),
    "品牌": ("不太喜欢这个牌子", "这个牌子没用过", "这个牌子不太了解", "这个牌子没听过"),
    "鞋码": ("这款没有我的码", "码数不太对"),
    "尺码": ("这款没有我的码", "码数不太对"),
}
_REACTION_DEFAULT = ("这个不太合适", "感觉不太适合我", "这款一般", "不太喜欢这款", "这个不行", "这个看过了",
                     "这款感觉差点意思", "这个不太想要", "嗯，这款看了", "这个我看看", "这款还行", "有点犹豫",
                     "这个之前看过", "这款评价好像一般", "这个感觉一般般", "这款我朋友买过", "看了下详情页",
                     "这个样子不太喜欢", "这款有点普通", "这款和我想的不太一样", "这个我再想想", "嗯嗯收到",
                     "这个好像不太行", "这款销量怎么这么少", "这个看着还可以", "这款我收藏了", "刚看了下",
                     "这个差不多", "这款有点犹豫", "这两款我都看了")
_REQUEST = ("有没有{}的", "想要{}的", "要{}的哦", "{}的有吗", "我想要{}的", "还有{}的吗", "有{}的推荐吗",
            "能不能找个{}的", "最好是{}的", "换个{}的看看", "我还是想要{}的", "{}的有没有", "再看看{}的",
            "有没有那种{}的", "能推荐个{}的吗", "想看看{}的", "{}的有合适的吗", "麻烦找个{}的", "我需要{}的",
            "其实我想要{}的", "主要还是想要{}的")
_JOIN = ("，", "，", " ", "。", "，另外")
_ITEM_QUESTION = ("这款有{}的吗", "这个有{}的吗", "有{}的吗", "这款{}的有货吗", "{}的还有吗", "这个有没有{}的")
_ITEM_ASKS = ("这款怎么样", "这个效果怎么样", "这两款有什么区别", "哪款更好一点", "这个质量怎么样",
              "这款适合我吗", "这个和刚才那个比呢", "这款卖得好吗", "这个用着怎么样", "这款有什么特点",
              "这款主要优点是什么", "这个和别家比怎么样", "这款好用吗", "这个值得买吗", "这款有什么不足吗",
              "这个买的人多吗", "这款评价怎么样", "这个耐用吗", "这款和那款差在哪", "这个是新款吗",
              "这款具体介绍一下", "这个适合我用吗", "这款靠谱吗", "这个怎么样，说说")
_ITEM_LEAD = ("", "", "", "好的，", "嗯嗯，", "那", "哦哦，", "看了下，", "刚看了，", "这个不错，", "行，",
              "收到，", "嗯，")
_ITEM_ASK_END = ("", "", "？", "?", "呀", "啊")
_MORE = ("还有其他款吗", "有没有别的推荐", "还有别的吗", "再推荐一款看看", "还有别的款式吗", "再看看别的")


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
        recorded_few = len(self.facts) <= 3  # an item recorded with little more than its price band
        for a in extra:
            if rng.random() < (0.5 if recorded_few else 0.25):
                agenda.append(Need(a, rng.choice(self.unrecorded[a])))
        negatable = [(a, c) for a in spec.attributes if self._applicable(a)
                     for c in self.lex.negatable(self.domain, a) if c not in self.truth.get(a, ())
                     and (self.leaf is None or c in spec.attributes[a].values_for(self.leaf))]
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

    def _slot(self, attr: str, surface: str) -> tuple[str, str, tuple[int, str]]:
        """A fill() slot that annotates the core of the surface, as the real annotators do."""
        return attr, surface, self.lex.core(self.domain, attr, surface, self.allow_held_out)

    def _kind(self, attr: str) -> str:
        kind = _KIND.get(attr, "generic")
        return "place" if kind == "scene" and self.domain == "大家电行业" else kind

    @property
    def _verb(self) -> str:
        return "穿" if self.domain in ("服装行业", "鞋类行业") else "用"

    def _clause(self, u: Utterance, need: Need, templates=None, offered=None, hedge: str = "") -> None:
        if templates is None:
            templates = _NEGATED if need.negated else _CLAUSES[self._kind(need.attr)]
        surface = self.surface(need, offered)
        if need.value in ("男", "女") and _KIND.get(need.attr) == "people" and templates is not _NEGATED:
            # a gender is said as 男款的, 女生穿的, 男士的: the annotators mark the 男 / 女 in it
            surface = need.value
            templates = _GENDER_REQUEST if templates is _REQUEST_KIND["people"] else _GENDER
        template = self.rng.choice(templates).replace("{v}", self._verb)
        after = template.split("{}", 1)[1][:1]
        if after and surface.endswith(after):  # no "学习用用" / "棉的的"
            template = template.replace("{}" + after, "{}", 1)
        before = template.split("{}", 1)[0][-1:]
        if before and surface.startswith(before):  # no "穿穿41"
            template = template.replace(before + "{}", "{}", 1)
        # a hedge before a bare value ("应该是偏干吧"); before other words only an interjection ("嗯，")
        bare = template.startswith("{}") and _KIND.get(need.attr) != "price"
        if hedge and (bare or hedge.endswith("，")) and hedge[0] != template[:1]:
            u.say(hedge)
        u.fill(template, [self._slot(need.attr, surface)])
        self.stated.append(need)

    def _pending(self) -> list[Need]:
        return [n for n in self.agenda if n not in self.stated]

    def stated_attrs(self) -> list[str]:
        return [n.attr for n in self.stated]

    def pending_needs(self) -> list[Need]:
        return self._pending()

    # ------------------------------------------------------------------ the three acts
    def opening(self, max_needs: int | None = None) -> Reply:
        """The first need (用户需求): usually the category, sometimes with one to three more needs."""
        rng = self.rng
        u = Utterance()
        pending = self._pending()
        cat = next((n for n in pending if n.attr == CATEGORY), None)
        others = [n for n in pending if n.attr != CATEGORY]
        k = max_needs if max_needs is not None else rng.choice((0, 1, 1, 1, 2, 2, 2, 3))
        chosen = others[:min(k, len(others))]
        u.say(rng.choice(_OPEN_LEAD))
        if cat is None:
            if not chosen:
                u.say(rng.choice(("有什么推荐的吗", "帮我推荐一款", "想买点东西，有推荐吗", "有没有好一点的推荐",
                                  "随便看看，有推荐的吗")))
                return u.result()
            u.say(rng.choice(("想买个", "帮我推荐一款，", "有没有推荐的，", "想挑一个，")))
            for i, n in enumerate(chosen):
                if i:
                    u.say("，")
                self._clause(u, n)
            return u.result()
        style = rng.random()
        generic_first = chosen and _KIND.get(chosen[0].attr, "generic") in ("generic", "function", "color") \
            and not chosen[0].negated
        if generic_first and style < 0.45:
            first = chosen[0]
            t = rng.choice(_OPEN_WITH)
            u.fill(t, [self._slot(first.attr, self.surface(first)), self._slot(CATEGORY, self.surface(cat))])
            self.stated += [first, cat]
            rest = chosen[1:]
        elif chosen and style < 0.65:
            for n in chosen:
                self._clause(u, n)
                u.say("，")
            t = rng.choice(("想买个{}", "有什么{}推荐吗", "{}有推荐的吗", "帮我推荐一款{}", "看看{}", "想要一款{}"))
            u.fill(t, [self._slot(CATEGORY, self.surface(cat))])
            self.stated.append(cat)
            rest = []
        else:
            u.fill(rng.choice(_OPEN_CATEGORY), [self._slot(CATEGORY, self.surface(cat))])
            self.stated.append(cat)
            rest = chosen
        for n in rest:
            u.say(rng.choice(("，", "，", " ")) if not n.negated else "，")
            self._clause(u, n)
        u.say(rng.choice(_OPEN_TAIL) if not u.text.endswith(("吗", "呢", "好")) else "")
        return u.result()

    def answer_parts(self, asked_keys: list[str], offered: dict[str, list[str]] | None = None,
                     tails: bool = True) -> list[Reply]:
        """One reply per asked attribute (a staff question may be answered over several turns)."""
        rng = self.rng
        out = []
        for key in asked_keys:
            u = Utterance()
            need = self._need_for(key, (offered or {}).get(key))
            if need is None and key in _PERSONAL and self._applicable(key):
                spec = self.lex.spec(self.domain).attributes[key]
                need = Need(key, rng.choice(spec.values_for(self.leaf) if self.leaf else list(spec.values)))
            if need is None and key == "人群":
                u.say(rng.choice(("就我自己用", "自己用的", "我自己", "给自己买的", "自用")).replace("用", self._verb))
            elif need is None:
                u.say(rng.choice(_INDIFFERENT))
            else:
                templates = _NEGATED if need.negated else _ANSWERS[self._kind(key)]
                hedge = rng.choice(_HEDGE)
                self._clause(u, need, templates, (offered or {}).get(key), hedge)
            if tails and rng.random() < 0.55:
                self._tail(u)
            out.append(u.result())
        return out

    def _tail(self, u: Utterance) -> None:
        tail = self.rng.choice(_TAILS)
        u.say(tail[1:] if u.text.endswith(("?", "？", "。", "，", " ")) else tail)

    def answer(self, asked_keys: list[str], offered: dict[str, list[str]] | None = None) -> Reply:
        """Answer a staff question about `asked_keys` in one utterance (用户回答)."""
        u = Utterance()
        parts = self.answer_parts(asked_keys, offered, tails=False)
        informative = [p for p in parts if p[1]] or parts[:1]
        for i, (text, attrs) in enumerate(informative):
            if i:
                u.say(self.rng.choice(("，", " ", "，", "，然后")))
            part = Utterance()
            part.parts, part.n, part.attrs = [text], len(text), attrs
            u.extend(part)
        if self.rng.random() < 0.55:
            self._tail(u)
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
        if self.rng.random() < 0.5:
            u.say(self.rng.choice(("还有，", "对了，", "另外", "哦对，", "补充一下，", "还有就是", "忘了说，")))
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
        """React to a recommended item (用户反馈) and say what else is wanted: a complaint about what
        differs from the target, or a pending need; acceptance only when nothing is left to ask for."""
        rng = self.rng
        diffs = self._differences(recommended, profile)
        pending = [n for n in self._pending() if n.attr != CATEGORY]
        u = Utterance()
        if diffs:
            pending_attrs = {n.attr for n in pending}
            stated = set(self.stated_attrs())
            diffs.sort(key=lambda a: (a not in pending_attrs, a in stated, a not in (PRICE, "颜色", "品牌"),
                                      rng.random()))
            attr = diffs[0]
            if attr == PRICE:
                rec_band = (self._facts(recommended).get(PRICE) or self._facts(profile or {}).get(PRICE) or ["中"])[0]
                mine = self.truth[PRICE][0]
                side = "高" if PRICE_BANDS.index(rec_band) > PRICE_BANDS.index(mine) else "低"
                u.say(rng.choice(_REACTION[PRICE][side]))
            else:
                u.say(rng.choice(_REACTION.get(attr, _REACTION_DEFAULT)))
            need = next((n for n in pending if n.attr == attr), None) or Need(attr, rng.choice(self.truth[attr]))
        elif pending:
            u.say(rng.choice(_REACTION_DEFAULT + ("嗯嗯", "好的", "这款还可以", "这个看着不错")))
            need = pending[0]
        else:
            if rng.random() < 0.7:
                return self.about_item()
            return rng.choice(_ITEM_LEAD) + rng.choice(_MORE) + (rng.choice(_TAILS) if rng.random() < 0.5 else ""), []
        u.say(rng.choice(_JOIN))
        self._clause(u, need, _NEGATED if need.negated else _REQUEST_KIND.get(self._kind(need.attr), _REQUEST))
        if rng.random() < 0.5:
            self._tail(u)
        return u.result()

    def about_item(self) -> Reply:
        """A question about the item just recommended: a value of the target (这款有黑色的吗), or how it is."""
        rng = self.rng
        u = Utterance()
        askable = [a for a in ("颜色", "尺码", "鞋码", "内存", "容量", "洗涤重量", "屏幕尺寸") if a in self.truth]
        if askable and rng.random() < 0.55:
            a = rng.choice(askable)
            need = Need(a, rng.choice(self.truth[a]))
            template = rng.choice(_ITEM_QUESTION)
            u.say(rng.choice(_ITEM_LEAD))
            u.fill(template, [self._slot(a, self.surface(need))])
            self.stated.append(need)
            u.say(rng.choice(_ITEM_ASK_END[:4]) if u.text.endswith(("吗", "么")) else rng.choice(_ITEM_ASK_END))
            if rng.random() < 0.4:
                self._tail(u)
            return u.result()
        question = rng.choice(_ITEM_ASKS)
        u.say(rng.choice(_ITEM_LEAD) + question + rng.choice(_ITEM_ASK_END[:4] if question.endswith("吗") else _ITEM_ASK_END))
        if rng.random() < 0.5:
            self._tail(u)
        return u.result()

    def positive(self) -> Reply:
        """Acceptance, often asking about one more of the target's values."""
        return self.about_item()

    def more(self) -> Reply:
        return self.rng.choice(_MORE), []
