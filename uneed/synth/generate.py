"""`synthesize`: write a complete U-NEED-format corpus directory from a seed."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from ..candidates import CandidatePools, candidate_rng
from ..corpus import Corpus, Item, write_behaviours, write_dialogues, write_items
from ..schema import SPLITS
from .behaviours import BehaviourIndex, user_behaviours
from .catalog import IdFactory, Seller, build_catalog, kg_rows
from .dialogues import build_dialogue
from .lexicon import Lexicon, default_lexicon

RELEASE_DIALOGUES = {"美妆行业": 1662, "手机行业": 1513, "服装行业": 1135, "鞋类行业": 1748, "大家电行业": 1640}
RELEASE_ITEMS = 68_954
RELEASE_BEHAVIOURS = 333_879
RELEASE_TUPLES = 332_148


@dataclass(frozen=True)
class Scale:
    dialogues: dict[str, int]  # per domain
    items: int  # whole catalog
    hosting_share: float = 0.25  # share of a domain's items held by sellers that host dialogues
    dialogues_per_host: float = 45.0
    small_sellers: tuple[int, int] = (10, 300)  # item counts of sellers without dialogues
    behaviours_per_user: float = RELEASE_BEHAVIOURS / sum(RELEASE_DIALOGUES.values())
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    extra: dict = field(default_factory=dict)


SCALES: dict[str, Scale] = {
    "full": Scale(dict(RELEASE_DIALOGUES), RELEASE_ITEMS),
    "small": Scale({d: 150 for d in RELEASE_DIALOGUES}, 6_900),
    "tiny": Scale({d: 12 for d in RELEASE_DIALOGUES}, 400, small_sellers=(10, 40)),
}

_DAY0 = datetime(2022, 8, 1)
_DAYS = 122  # 2022-08-01 .. 2022-11-30
_HOURS = list(range(24))
_HOUR_WEIGHTS = [1, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1, 2, 3.5, 4, 4, 3.5, 3.5, 4, 4, 4, 3.5, 3.5, 4, 4.5, 4.5, 3.5, 2]


def _split_of(n: int, fractions: tuple[float, float, float], rng: random.Random) -> list[str]:
    n_valid = round(n * fractions[1])
    n_test = round(n * fractions[2])
    labels = ["valid"] * n_valid + ["test"] * n_test
    labels += ["train"] * (n - len(labels))
    rng.shuffle(labels)
    return labels


def _progress(iterable, total: int, desc: str, enabled: bool):
    from ..logs import progress_bar

    return progress_bar(iterable, enabled=enabled, total=total, desc=desc, unit="dlg", leave=False)


def hosting_sellers(lex: Lexicon, cfg: Scale) -> dict[str, int]:
    """Sellers with dialogues per domain: enough that every leaf category gets dialogues (one host per
    leaf, when there are a dozen dialogues per leaf to share out); the first hosts take the leaves in turn."""
    return {d: max(2, round(n / cfg.dialogues_per_host), min(len(lex.spec(d).leaves), n // 12))
            for d, n in cfg.dialogues.items()}


def synthesize(out_dir: str | Path, scale: str = "small", seed: int = 0, progress: bool = True,
               lexicon: Lexicon | None = None) -> dict:
    """Write {train,valid,test}_dialogue.json, item_kg.txt and user_action.txt under out_dir; return counts."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    cfg = SCALES[scale]
    lex = lexicon or default_lexicon()
    out = Path(out_dir)
    t0 = time.perf_counter()

    # -- catalog
    total_dialogues = sum(cfg.dialogues.values())
    domain_items = {}
    assigned = 0
    domains = list(cfg.dialogues)
    for k, d in enumerate(domains):
        n = cfg.items - assigned if k == len(domains) - 1 else round(cfg.items * cfg.dialogues[d] / total_dialogues)
        domain_items[d] = n
        assigned += n
    hosting = hosting_sellers(lex, cfg)
    ids = IdFactory(random.Random(f"{seed}:ids"))
    sellers = build_catalog(lex, domain_items, hosting, cfg.hosting_share, ids, random.Random(f"{seed}:catalog"),
                            cfg.small_sellers)
    items = {}
    for ss in sellers.values():
        for s in ss:
            for it in s.items:
                items[it.item_id] = Item(it.item_id, it.seller_id, it.kg)
    pools = CandidatePools(Corpus(dialogues={}, items=items, behaviours={}))
    index = BehaviourIndex(sellers)

    # -- dialogues and behaviours
    by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    behaviour_rows: list[tuple[str, str, str, str, str]] = []
    plan = []
    for d in domains:
        labels = _split_of(cfg.dialogues[d], cfg.split, random.Random(f"{seed}:split:{d}"))
        plan += [(d, i, labels[i]) for i in range(cfg.dialogues[d])]
    n_turns = 0
    host_lists: dict[str, tuple[list[Seller], list[int]]] = {}
    for d in domains:
        hosts = [s for s in sellers[d] if s.hosting]
        host_lists[d] = (hosts, [len(s.items) for s in hosts])
    for d, i, split in _progress(plan, len(plan), f"synth {scale}", progress):
        rng = random.Random(f"{seed}:dlg:{d}:{i}")
        hosts, sizes = host_lists[d]
        seller = rng.choices(hosts, weights=sizes)[0]
        target = rng.choices(seller.items, weights=[it.weight for it in seller.items])[0]
        user_id = ids.account()
        sid = "%032x" % rng.getrandbits(128)
        start = _DAY0 + timedelta(days=rng.randrange(_DAYS), hours=rng.choices(_HOURS, _HOUR_WEIGHTS)[0],
                                  minutes=rng.randrange(60), seconds=rng.randrange(60))
        dialogue, first_rec = build_dialogue(lex, seller, target, user_id, sid, split, start, rng)
        for turn in dialogue["dialogue"]:
            n_turns += 1
            if turn["rec_item_id"]:
                turn["rec_item_candidates"] = [
                    pools.build(gold, seller.seller_id, info.split("@", 1)[1],
                                candidate_rng(seed, sid, turn["seq_no"], k))
                    for k, (gold, info) in enumerate(zip(turn["rec_item_id"], turn["rec_item_info"]))]
        by_split[split].append(dialogue)
        n = max(3, round(rng.gammavariate(2.5, cfg.behaviours_per_user / 2.5)))
        behaviour_rows += user_behaviours(index, user_id, seller, target, start, first_rec, n, rng)

    # -- write
    for split in SPLITS:
        by_split[split].sort(key=lambda dlg: dlg["sid"])
        write_dialogues(out / f"{split}_dialogue.json", by_split[split])
    n_kg = 0

    def counted(rows):
        nonlocal n_kg
        for row in rows:
            n_kg += 1
            yield row

    write_items(out / "item_kg.txt", counted(kg_rows(sellers, random.Random(f"{seed}:kgorder"))))
    write_behaviours(out / "user_action.txt", behaviour_rows)
    counts = {
        "scale": scale,
        "seed": seed,
        "dialogues": sum(len(v) for v in by_split.values()),
        **{f"{s}_dialogues": len(by_split[s]) for s in SPLITS},
        "per_domain": {d: cfg.dialogues[d] for d in domains},
        "turns": n_turns,
        "items": len(items),
        "sellers": sum(len(v) for v in sellers.values()),
        "kg_tuples": n_kg,
        "behaviours": len(behaviour_rows),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return counts
