"""Corpus statistics: dialogues, turns, act tags, attributes, items, behaviours, per category."""
from __future__ import annotations

from collections import Counter, defaultdict

from .corpus import Corpus
from .schema import ACT_TAGS, DOMAINS, SPLITS


def corpus_stats(corpus: Corpus) -> dict:
    per: dict[str, dict] = defaultdict(lambda: {
        "dialogues": Counter(), "turns": 0, "acts": Counter(), "attributes": 0, "attribute_keys": Counter(),
        "recommendations": 0, "users": set()})
    for split, d in corpus.all_dialogues():
        for group in ("all", d.domain):
            g = per[group]
            g["dialogues"][split] += 1
            g["turns"] += len(d.dialogue)
            g["users"].add(d.userid)
            for t in d.dialogue:
                g["acts"][t.act_tag] += 1
                g["attributes"] += len(t.attributes)
                g["attribute_keys"].update(a.key for a in t.attributes)
                g["recommendations"] += len(t.rec_item_id)
    out = {}
    order = ["all"] + [d for d in DOMAINS if d in per] + sorted(set(per) - set(DOMAINS) - {"all"})
    for group in order:
        g = per[group]
        n = sum(g["dialogues"].values())
        out[group] = {
            "dialogues": n,
            **{f"dialogues_{s}": g["dialogues"][s] for s in SPLITS},
            "turns": g["turns"],
            "turns_per_dialogue": round(g["turns"] / n, 2) if n else 0.0,
            **{f"act_{a}": g["acts"][a] for a in ACT_TAGS},
            "attribute_spans": g["attributes"],
            "attribute_keys": len(g["attribute_keys"]),
            "recommendations": g["recommendations"],
            "users": len(g["users"]),
        }
    behaviours = sum(len(items) for _t, items in corpus.behaviours.values())
    out["all"].update({
        "items": len(corpus.items),
        "knowledge_tuples": sum(len(v) for item in corpus.items.values() for v in item.knowledge.values()),
        "behaviours": behaviours,
        "behaviour_users": len(corpus.behaviours),
        "sellers": len({item.seller_id for item in corpus.items.values()}),
        "item_categories": len({item.category for item in corpus.items.values() if item.category}),
    })
    return out
