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
_OPENING_TURNS = 4  # the need, one more need, the category question and its answer


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


# How many items a dialogue recommends (2-7, mean about 2.9) and how many back-to-back 系统推荐 turns of
# one item each a block has (about 40% of recommendation turns sit in runs of 2 or 3).
_N_ITEMS = ((2, 3, 4, 5, 6, 7), (0.46, 0.30, 0.12, 0.07, 0.03, 0.02))
_RUN = ((1, 2, 3), (0.66, 0.26, 0.08))


def _others(shopper: Shopper, spec: DomainSpec, seller: Seller, target: SynthItem, rng: random.Random,
            n: int) -> list[SynthItem]:
    """Up to n other items of the seller to show before the target: same leaf first, near misses first."""
    same_leaf = [i for i in seller.items if i.leaf == target.leaf and i.item_id != target.item_id]
    # staff show popular items: drawn by popularity, as the targets are
    drawn = rng.choices(same_leaf, weights=[i.weight for i in same_leaf], k=max(12, 3 * n)) if same_leaf else []
    looked = list({i.item_id: i for i in drawn}.values())
    fits = [shopper.satisfied_by(i.kg, profile_as_kg(spec, i)) for i in looked]
    out = ([i for i, ok in zip(looked, fits) if not ok] + [i for i, ok in zip(looked, fits) if ok])[:n]
    if len(out) < n:
        other_leaf = [i for i in seller.items if i.leaf != target.leaf]
        out += rng.sample(other_leaf, min(len(other_leaf), n - len(out)))
    rng.shuffle(out)
    return out


def _blocks(items: list[SynthItem], rng: random.Random) -> list[list[SynthItem]]:
    blocks, i = [], 0
    while i < len(items):
        k = rng.choices(*_RUN)[0]
        blocks.append(items[i:i + k])
        i += k
    return blocks


def build_dialogue(lex: Lexicon, seller: Seller, target: SynthItem, user_id: str, sid: str, split: str,
                   start: datetime, rng: random.Random) -> tuple[dict, datetime]:
    """Return the dialogue dict (rec_item_candidates still empty) and the time of its first recommendation.

    Shape: the user's need; staff questions and the user's answers; then blocks of 1-3 back-to-back
    recommendations of one item each (2-7 items, the target last), each block followed by an
    explanation of one of its items and/or the user's feedback, which mostly says what else is
    wanted; the dialogue ends on a staff turn.
    """
    domain = seller.domain
    spec = lex.spec(domain)
    held = split != "train"
    shopper = Shopper(domain, target.kg, lex, rng, profile=profile_as_kg(spec, target), allow_held_out=held)
    staff = Staff(domain, lex, rng, allow_held_out=held)
    t = _Turns(start, rng)
    asked: set[str] = set()

    # -- the recommendation phase is planned first, so the questions before it fit in MAX_TURNS
    items = _others(shopper, spec, seller, target, rng, rng.choices(*_N_ITEMS)[0] - 1) + [target]
    blocks = _blocks(items, rng)
    plan = []  # per block: (explain one of its items, user feedback after it, a staff question after that)
    for b in range(len(blocks)):
        explain = rng.random() < (0.5 if b == len(blocks) - 1 else 0.45)
        if b == len(blocks) - 1:
            plan.append((explain, rng.random() < 0.4, False))
        else:  # something always parts two blocks
            plan.append((explain, not explain or rng.random() < 0.85, rng.random() < 0.2))

    def rec_turns() -> int:
        return sum(len(blk) + e + 2 * f * (k == len(blocks) - 1) + f * (k < len(blocks) - 1) + 2 * q
                   for k, (blk, (e, f, q)) in enumerate(zip(blocks, plan)))

    while _OPENING_TURNS + rec_turns() > MAX_TURNS:
        asking = [k for k, p in enumerate(plan) if p[2]]
        if asking:
            plan[asking[0]] = plan[asking[0]][:2] + (False,)
        else:  # fewer items: the first block loses its first item (or the block itself)
            blocks[0].pop(0)
            if not blocks[0]:
                blocks.pop(0)
                plan.pop(0)
    budget = MAX_TURNS - rec_turns()

    # -- opening
    text, attrs = shopper.opening()
    t.add(USER, USER_NEED, text, attrs)
    if rng.random() < 0.12:
        extra = shopper.volunteer()
        if extra:
            t.add(USER, USER_NEED, *extra)
    if CATEGORY not in shopper.stated_attrs() and shopper.leaf:
        text, attrs, offered = staff.ask([CATEGORY], None, {})
        t.add(STAFF, STAFF_ASK, text, attrs)
        asked.add(CATEGORY)
        text, attrs = shopper.answer([CATEGORY], offered)
        t.add(USER, USER_ANSWER, text, attrs)

    # -- elicitation
    rounds = rng.choices((0, 1, 2, 3, 4), weights=(1.0, 3.0, 3.5, 2.0, 0.8))[0]
    if len(t) + rec_turns() < 4:  # at least four turns, as in every real dialogue
        rounds = max(rounds, 1)
    for _ in range(rounds):
        if len(t) + 4 > budget:
            break
        k = 2 if rng.random() < 0.25 else 1
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
        if rng.random() < 0.15:
            extra = shopper.volunteer()
            if extra:
                t.add(USER, USER_ANSWER, *extra)

    # -- recommendation blocks
    for b, (block, (explain, feedback, ask_more)) in enumerate(zip(blocks, plan)):
        last = b == len(blocks) - 1
        for item in block:
            t.add(STAFF, STAFF_RECOMMEND, staff.recommend_text(), rec=[item])
        explained = block[-1] if rng.random() < 0.7 else rng.choice(block)
        if explain:
            t.add(STAFF, STAFF_EXPLAIN, *staff.explain(profile_as_kg(spec, explained), spec.leaf_names[explained.leaf]))
        if not last:
            if feedback:
                shown = block[-1]
                t.add(USER, USER_FEEDBACK, *shopper.feedback(shown.kg, profile_as_kg(spec, shown)))
            if ask_more:
                attrs_to_ask = staff.choose_attrs(shopper.leaf, shopper.truth,
                                                  asked | set(shopper.stated_attrs()), 1)
                if attrs_to_ask:
                    asked.update(attrs_to_ask)
                    text, attrs, offered = staff.ask(attrs_to_ask, shopper.leaf, shopper.truth)
                    t.add(STAFF, STAFF_ASK, text, attrs)
                    t.add(USER, USER_ANSWER, *shopper.answer(attrs_to_ask, offered))
        elif feedback:  # a last question about the target, answered by the staff
            text, attrs = shopper.about_item()
            t.add(USER, USER_FEEDBACK, text, attrs)
            asked_value = next((text[a["start"]:a["exclusive_end"]] for a in attrs if a["value"]), "")
            t.add(STAFF, STAFF_EXPLAIN, *staff.explain(profile_as_kg(spec, target), spec.leaf_names[target.leaf],
                                                       answer=asked_value))

    if len(t) > MAX_TURNS:
        raise RuntimeError(f"generator bug: dialogue {sid} has {len(t)} turns, more than {MAX_TURNS}")
    dialogue = {
        "domain": domain,
        "sid": sid,
        "sellerid": seller.seller_id,
        "userid": user_id,
        "ds": start.strftime("%Y%m%d"),
        "dialogue": t.turns,
    }
    return dialogue, t.first_rec or t.clock
