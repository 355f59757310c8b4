"""One synthetic pre-sales dialogue in the release format (plain dicts, built turn by turn)."""
from __future__ import annotations

import random
from datetime import datetime, timedelta

from ..schema import STAFF, STAFF_ASK, STAFF_EXPLAIN, STAFF_RECOMMEND, USER, USER_ANSWER, USER_FEEDBACK, USER_NEED
from .catalog import Seller, SynthItem
from .lexicon import CATEGORY, DomainSpec, Lexicon
from .shopper import Shopper
from .staff import Staff

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_TURNS = 20
_USER_HELLO = ("在吗", "你好", "亲 在吗", "您好", "在不在")


def profile_as_kg(spec: DomainSpec, item: SynthItem) -> dict[str, list[str]]:
    """An item's true profile written with item_kg.txt relation names (品类 -> 叶子类目 name)."""
    out = {}
    for attr, values in item.profile.items():
        relation = spec.attributes[attr].kg_relation
        out[relation] = [spec.leaf_names[v] for v in values] if attr == CATEGORY else list(values)
    return out


class _Turns:
    def __init__(self, start: datetime, rng: random.Random):
        self.turns: list[dict] = []
        self.clock = start
        self.rng = rng
        self.first_rec: datetime | None = None

    def add(self, sender: str, act: str, text: str, attrs=(), rec: list[SynthItem] | None = None) -> None:
        rng = self.rng
        if self.turns:
            prev_user = self.turns[-1]["sender_type"] == USER
            if sender == USER:
                gap = rng.randint(4, 60) if prev_user else rng.randint(6, 150)
            else:
                gap = rng.randint(8, 240) if prev_user else rng.randint(3, 90)
            self.clock += timedelta(seconds=gap)
        turn = {
            "seq_no": len(self.turns) + 1,
            "time": self.clock.strftime(TIME_FORMAT),
            "sender_type": sender,
            "send_content": text,
            "act_tag": act,
            "attributes": list(attrs),
            "rec_item_id": [i.item_id for i in rec] if rec else [],
            "rec_item_info": [f"{i.item_id}@{i.code}" for i in rec] if rec else [],
            "rec_item_candidates": [],
        }
        if rec and self.first_rec is None:
            self.first_rec = self.clock
        self.turns.append(turn)

    def __len__(self) -> int:
        return len(self.turns)


def _near_miss(shopper: Shopper, spec: DomainSpec, seller: Seller, target: SynthItem, rng: random.Random,
               exclude: set[str]) -> SynthItem | None:
    same_leaf = [i for i in seller.items if i.leaf == target.leaf and i.item_id not in exclude]
    for _ in range(8):
        if not same_leaf:
            return None
        cand = rng.choice(same_leaf)
        if not shopper.satisfied_by(cand.kg, profile_as_kg(spec, cand)):
            return cand
    return None


def build_dialogue(lex: Lexicon, seller: Seller, target: SynthItem, user_id: str, sid: str, split: str,
                   start: datetime, rng: random.Random) -> tuple[dict, datetime]:
    """Return the dialogue dict (rec_item_candidates still empty) and the time of its first recommendation."""
    domain = seller.domain
    spec = lex.spec(domain)
    held = split != "train"
    shopper = Shopper(domain, target.kg, lex, rng, profile=profile_as_kg(spec, target), allow_held_out=held)
    staff = Staff(domain, lex, rng, allow_held_out=held)
    t = _Turns(start, rng)
    asked: set[str] = set()

    # -- opening
    if rng.random() < 0.12:
        t.add(USER, USER_NEED, rng.choice(_USER_HELLO))
        if rng.random() < 0.5:
            t.add(STAFF, STAFF_ASK, *staff.greet())
        else:
            text, attrs, _ = staff.ask([CATEGORY], None, {})
            t.add(STAFF, STAFF_ASK, text, attrs)
            asked.add(CATEGORY)
            text, attrs = shopper.answer([CATEGORY])
            t.add(USER, USER_ANSWER, text, attrs)
    if CATEGORY not in asked:
        text, attrs = shopper.opening()
        t.add(USER, USER_NEED, text, attrs)
        if rng.random() < 0.15:
            extra = shopper.volunteer()
            if extra:
                t.add(USER, USER_NEED, *extra)
        if rng.random() < 0.1:
            t.add(STAFF, STAFF_ASK, *staff.greet())
    if CATEGORY not in shopper.stated_attrs() and shopper.leaf and CATEGORY not in asked:
        text, attrs, offered = staff.ask([CATEGORY], None, {})
        t.add(STAFF, STAFF_ASK, text, attrs)
        asked.add(CATEGORY)
        text, attrs = shopper.answer([CATEGORY], offered)
        t.add(USER, USER_ANSWER, text, attrs)

    # -- elicitation
    rounds = rng.choices((0, 1, 2, 3, 4, 5), weights=(0.8, 3.0, 4.0, 2.6, 1.3, 0.4))[0]
    for _ in range(rounds):
        if len(t) >= 12:
            break
        k = 2 if rng.random() < 0.3 else 1
        attrs_to_ask = staff.choose_attrs(shopper.leaf, shopper.truth, asked | set(shopper.stated_attrs()), k)
        if not attrs_to_ask:
            break
        asked.update(attrs_to_ask)
        text, attrs, offered = staff.ask(attrs_to_ask, shopper.leaf, shopper.truth)
        t.add(STAFF, STAFF_ASK, text, attrs)
        if len(attrs_to_ask) > 1 and rng.random() < 0.5:
            for text, attrs in shopper.answer_parts(attrs_to_ask, offered):
                t.add(USER, USER_ANSWER, text, attrs)
        else:
            t.add(USER, USER_ANSWER, *shopper.answer(attrs_to_ask, offered))
        if rng.random() < 0.2:
            extra = shopper.volunteer()
            if extra:
                t.add(USER, USER_ANSWER, *extra)

    # -- recommendation
    if rng.random() < 0.18:
        t.add(STAFF, STAFF_EXPLAIN, *staff.filler())
    shown = {target.item_id}
    misses = 0
    while misses < 2 and rng.random() < (0.32 if misses == 0 else 0.2):
        miss = _near_miss(shopper, spec, seller, target, rng, shown)
        if miss is None:
            break
        shown.add(miss.item_id)
        misses += 1
        t.add(STAFF, STAFF_RECOMMEND, staff.recommend_text(), rec=[miss])
        if rng.random() < 0.25:
            t.add(STAFF, STAFF_EXPLAIN, *staff.explain(profile_as_kg(spec, miss), spec.leaf_names[miss.leaf]))
        t.add(USER, USER_FEEDBACK, *shopper.feedback(miss.kg, profile_as_kg(spec, miss)))
    rec = [target]
    if rng.random() < 0.08:
        others = [i for i in seller.items if i.leaf == target.leaf and i.item_id not in shown]
        if others:
            rec.insert(rng.randrange(2), rng.choice(others))
    t.add(STAFF, STAFF_RECOMMEND, staff.recommend_text(), rec=rec)
    if rng.random() < 0.45:
        t.add(STAFF, STAFF_EXPLAIN, *staff.explain(profile_as_kg(spec, target), spec.leaf_names[target.leaf]))
    if rng.random() < 0.55 or len(t) < 4:
        t.add(USER, USER_FEEDBACK, *shopper.positive())
        if len(t) < MAX_TURNS and (rng.random() < 0.12 or len(t) < 4):
            t.add(STAFF, STAFF_EXPLAIN, *staff.closing())
    while len(t) < 4:
        t.add(USER, USER_FEEDBACK, *shopper.positive())

    dialogue = {
        "domain": domain,
        "sid": sid,
        "sellerid": seller.seller_id,
        "userid": user_id,
        "ds": start.strftime("%Y%m%d"),
        "dialogue": t.turns[:MAX_TURNS],
    }
    return dialogue, t.first_rec or t.clock
