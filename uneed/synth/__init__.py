"""Embedded generator of a U-NEED-format corpus (the real release is given out only on application).

    from uneed.synth import synthesize
    counts = synthesize("data/synth_small", scale="small", seed=0)

Public pieces: `synthesize`, `SCALES`, the domain `Lexicon` (with held-out surface forms) and the
`Shopper` user simulator (answers questions about a hidden target item with exact spans).
"""
from .generate import RELEASE_BEHAVIOURS, RELEASE_DIALOGUES, RELEASE_ITEMS, RELEASE_TUPLES, SCALES, Scale, synthesize
from .lexicon import (CATEGORY, DOMAIN_SPECS, HELD_OUT_RATE, PRICE, AttributeSpec, DomainSpec, Lexicon, cn_number,
                      default_lexicon)
from .shopper import Need, Shopper
from .staff import Staff
from .text import Utterance

__all__ = [
    "synthesize", "SCALES", "Scale", "RELEASE_DIALOGUES", "RELEASE_ITEMS", "RELEASE_BEHAVIOURS", "RELEASE_TUPLES",
    "Lexicon", "default_lexicon", "DOMAIN_SPECS", "DomainSpec", "AttributeSpec", "HELD_OUT_RATE", "CATEGORY", "PRICE",
    "cn_number", "Shopper", "Need", "Staff", "Utterance",
]
