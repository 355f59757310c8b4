"""A simulated shopper for measuring a pre-sales agent as it runs (`presales simulate`).

An `Episode` is a hidden TARGET item of the corpus (the item a test dialogue's staff recommended
last, so a real user of the corpus wanted it, with that user's behaviours before the dialogue) and a
seed. The `SimulatedShopper` then:

  - opens with a need: the target's category, sometimes with one more of its values;
  - answers a question only from the target's knowledge: for each asked attribute one value the
    target has (a random one of several), said in one of the corpus's surface forms (the lexicon of
    the embedded corpus: synonyms, colloquial variants, numbers written different ways; for a
    relation the lexicon does not know, the value as item_kg.txt writes it), or '都可以' when the
    target has no such attribute; it never names the item;
  - turns down a wrong recommendation saying which attribute differs (and what it wants instead), or,
    when no recorded attribute differs, says the item is not it and adds a need not yet stated;
  - accepts the target when it is recommended.

Every need it states is recorded in `stated` as (attribute, canonical value) so tests can check that
each is a value of the target. The same seed gives the same episodes and the same words.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .corpus import CATEGORY_RELATION, Corpus, Item
from .synth.lexicon import CATEGORY, Lexicon, default_lexicon

ACCEPT = ("好的，就这款吧", "就这款了，我拍了", "好的，这个可以，就要这款", "可以的，就这个吧")
INDIFFERENT = ("{}都可以", "{}没什么要求", "{}无所谓的")
OPENINGS = ("想买个{}", "有没有{}推荐", "帮我推荐一款{}", "我想看看{}")
EXTRA = ("，要{}的", "，最好是{}的", "，{}的")
ANSWERS = ("{}", "{}的", "要{}的", "{}吧", "嗯嗯，{}的")
# each rejection carries a cue a shop assistant (and agent.policy) reads as 'not this one'
REJECT_ATTRIBUTE = ("这款{attr}不太对，有没有{value}的", "{attr}不合适，我要{value}的，换一款吧",
                    "不太喜欢这款的{attr}，有没有{value}的")
REJECT_OTHER = ("这款不太合适，有没有别的", "不是我想要的，换一款看看")
REJECT_MORE = ("这款不太合适，我要{value}的", "不是这款，有没有{value}的")


@dataclass(frozen=True)
class Episode:
    index: int
    domain: str
    target: str  # item id, never shown to the agent
    user_id: str
    behaviours: tuple[str, ...]  # what the user browsed before (implicit needs, as in the corpus)
    seed: int
    source: str  # sid of the dialogue the target comes from


def sample_episodes(corpus: Corpus, n: int, seed: int = 0, split: str = "test") -> list[Episode]:
    """n episodes from the dialogues of `split` whose staff recommended an item the knowledge file
    has; seeded: the same corpus, n and seed give the same episodes. More episodes than dialogues
    reuse targets with other seeds."""
    pool = []
    for d in corpus.split(split):
        recommended = [i for t in d.dialogue if not t.is_user for i in t.rec_item_id if i in corpus.items]
        if recommended:
            first_time = d.dialogue[0].time if d.dialogue else None
            pool.append((d, recommended[-1], tuple(corpus.user_behaviours(d.userid, before=first_time))))
    if not pool:
        raise ValueError(f"no {split} dialogue recommends an item of item_kg.txt: nothing to simulate")
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < n:
        block = list(range(len(pool)))
        rng.shuffle(block)
        order.extend(block)
    return [Episode(i, pool[j][0].domain, pool[j][1], pool[j][0].userid, pool[j][2], rng.randrange(2 ** 31),
                    pool[j][0].sid) for i, j in enumerate(order[:n])]


@dataclass
class SimulatedShopper:
    domain: str
    knowledge: Mapping[str, Sequence[str]]  # the target's relation -> values (item_kg.txt)
    rng: random.Random
    lexicon: Lexicon = field(default_factory=default_lexicon)
    stated: list[tuple[str, str]] = field(default_factory=list)  # (attribute, canonical value) said so far

    def __post_init__(self):
        self.facts = self._facts(self.knowledge)

    @classmethod
    def for_episode(cls, episode: Episode, items: Mapping[str, Item], lexicon: Lexicon | None = None
                    ) -> "SimulatedShopper":
        return cls(episode.domain, items[episode.target].knowledge, random.Random(episode.seed),
                   lexicon or default_lexicon())

    # ------------------------------------------------------------------ what the target is
    def _knows_domain(self) -> bool:
        return self.domain in self.lexicon.domains

    def _facts(self, knowledge: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """attribute (as dialogues name it) -> canonical values of an item."""
        out: dict[str, list[str]] = {}
        for relation, values in knowledge.items():
            if relation == CATEGORY_RELATION:
                continue  # a numeric code nobody says
            attr = self.lexicon.attribute_of_relation(self.domain, relation) if self._knows_domain() else None
            if attr == CATEGORY:
                values = [self.lexicon.leaf_of_name(self.domain, v) or v for v in values]
            attr = attr or relation
            bucket = out.setdefault(attr, [])
            bucket.extend(v for v in values if v and v not in bucket)
        return {a: v for a, v in out.items() if v}

    def differences(self, knowledge: Mapping[str, Sequence[str]]) -> list[str]:
        """Attributes both items record with no value in common (what makes an item the wrong one)."""
        other = self._facts(knowledge)
        return [a for a, values in self.facts.items() if a in other and not set(values) & set(other[a])]

    # ------------------------------------------------------------------ how it is said
    def surface(self, attr: str, value: str) -> str:
        forms = self.lexicon.forms(self.domain, attr, value) if self._knows_domain() else []
        return self.rng.choice(forms) if forms else value

    def _say(self, attr: str, value: str | None = None) -> str:
        if value is None:
            unsaid = [v for v in self.facts[attr] if (attr, v) not in self.stated]
            value = self.rng.choice(unsaid or self.facts[attr])
        self.stated.append((attr, value))
        return self.surface(attr, value)

    def _unstated(self) -> list[str]:
        said = {a for a, _ in self.stated}
        return [a for a in self.facts if a not in said]

    # ------------------------------------------------------------------ the acts
    def opening(self) -> str:
        rng = self.rng
        text = rng.choice(OPENINGS).format(self._say(CATEGORY) if CATEGORY in self.facts else "商品")
        others = [a for a in self._unstated() if a != CATEGORY]
        if others and rng.random() < 0.5:
            text += rng.choice(EXTRA).format(self._say(rng.choice(others)))
        return text

    def answer(self, asked: Sequence[str]) -> str:
        """The reply to a question about the attribute keys `asked`."""
        parts = []
        for attr in dict.fromkeys(asked):
            if attr in self.facts:
                parts.append(self.rng.choice(ANSWERS).format(self._say(attr)))
            else:  # an attribute it knows of but its target lacks is named; anything else is not repeated
                known = self._knows_domain() and attr in self.lexicon.attributes(self.domain)
                parts.append(self.rng.choice(INDIFFERENT).format(attr if known else "这个"))
        return "，".join(parts) if parts else self.volunteer()

    def volunteer(self) -> str:
        """A turn that answers no question: one more need, or asking for a recommendation."""
        left = [a for a in self._unstated() if a != CATEGORY]
        if left:
            return self.rng.choice(("还有，", "另外，", "")) + self.rng.choice(ANSWERS[1:]).format(
                self._say(self.rng.choice(left)))
        return self.rng.choice(("有推荐的吗", "帮我推荐一款吧"))

    def react(self, item: str, items: Mapping[str, Item], target: str) -> tuple[bool, str]:
        """(accepted, text) for a recommended item: accepts the target, turns anything else down."""
        if item == target:
            return True, self.rng.choice(ACCEPT)
        other = items.get(item)
        diffs = self.differences(other.knowledge) if other is not None else []
        if diffs:
            said = {a for a, _ in self.stated}
            diffs.sort(key=lambda a: (a in said, a == CATEGORY, self.rng.random()))  # a new need first
            attr = diffs[0]
            return False, self.rng.choice(REJECT_ATTRIBUTE).format(attr=attr, value=self._say(attr))
        left = [a for a in self._unstated() if a != CATEGORY]
        if left:
            return False, self.rng.choice(REJECT_MORE).format(value=self._say(self.rng.choice(left)))
        return False, self.rng.choice(REJECT_OTHER)
