"""Side-by-side realism report of two U-NEED-format directories (`presales data compare REAL OTHER`).

Each figure is measured the same way on both corpora, so a generated corpus can be held against the
real samples (or the real release) on what a careful reader notices: how long staff turns are, how
often utterances repeat verbatim or share a frame once the annotated values are blanked, how
recommendations are laid out, how dialogues end, how often feedback states a need, how sparing the
particles are, how rich the candidates' knowledge is, which attribute keys each category annotates,
and how well a lexicon learnt on one corpus's train split transfers to the other.

    from uneed.compare import corpus_profile, lexicon_transfer
    profile = corpus_profile(load_corpus("data/small"))      # {metric: value}, in report order
    transfer = lexicon_transfer(load_corpus("data/small"), load_corpus("../shared/uneed-samples"))
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from statistics import mean

from .baselines import LexiconMatcher
from .corpus import CATEGORY_RELATION, Corpus
from .metrics import get_metric
from .schema import ACT_TAGS, LINK_ONLY, SPLITS, STAFF, STAFF_EXPLAIN, STAFF_RECOMMEND, USER_FEEDBACK, Dialogue
from .tasks.samples import build_samples

PRICE_RELATION = "价格区间"
BLANK = "□"
_NUMBER = re.compile(r"[0-9０-９.]+")


@dataclass
class Row:
    """One line of the report: a label and the value on each corpus."""

    label: str
    real: object
    other: object


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}% ({part}/{whole})" if whole else "n/a (0)"


def _mean_p90(values: list[int]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{mean(values):.1f} / {p90}"


def _mean_max(values: list[int]) -> str:
    return f"{mean(values):.1f} / {max(values)}" if values else "n/a"


def frame(text: str, spans: list[tuple[int, int]]) -> str:
    """The utterance with its annotated values (and any other number) replaced by one blank each."""
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:  # overlapping annotations: the first one already blanked this text
            continue
        out += [text[pos:start], BLANK]
        pos = end
    out.append(text[pos:])
    return _NUMBER.sub(BLANK, "".join(out))


def _runs(acts: list[str], act: str) -> list[int]:
    """Lengths of the maximal runs of consecutive `act` turns."""
    runs, n = [], 0
    for a in acts + [""]:
        if a == act:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


def corpus_profile(corpus: Corpus) -> dict[str, str]:
    """The report's figures for one corpus, as printable strings in report order."""
    dialogues: list[Dialogue] = [d for _s, d in corpus.all_dialogues()]
    turns = [t for d in dialogues for t in d.dialogue]
    said = [t for t in turns if t.send_content != LINK_ONLY]
    staff = [t for t in said if t.sender_type == STAFF]
    explain = [t for t in turns if t.act_tag == STAFF_EXPLAIN]
    recs = [t for t in turns if t.act_tag == STAFF_RECOMMEND]
    feedback = [t for t in turns if t.act_tag == USER_FEEDBACK]
    acts = Counter(t.act_tag for t in turns)
    verbatim = Counter(t.send_content for t in said)
    frames = [frame(t.send_content, [(a.start, a.exclusive_end) for a in t.attributes if a.value])
              for t in said]
    frame_counts = Counter(frames)

    in_runs = 0
    explain_orphans = 0
    items_per_dialogue = []
    for d in dialogues:
        tags = [t.act_tag for t in d.dialogue]
        in_runs += sum(n for n in _runs(tags, STAFF_RECOMMEND) if n >= 2)
        items_per_dialogue.append(len({i for t in d.dialogue for i in t.rec_item_id}))
        seen_rec = False
        for t in d.dialogue:
            seen_rec = seen_rec or bool(t.rec_item_id)
            if t.act_tag == STAFF_EXPLAIN and not seen_rec:
                explain_orphans += 1

    candidates = [c for t in recs for cands in (t.rec_item_candidates or []) for c in cands]
    known = [c for c in candidates if c in corpus.items]
    bare = sum(not set(corpus.items[c].knowledge) - {CATEGORY_RELATION, PRICE_RELATION} for c in known)
    turn_counts = [len(d.dialogue) for d in dialogues]
    n_items = items_per_dialogue or [0]

    out = {
        "dialogues": str(len(dialogues)),
        "turns per dialogue, mean (min-max)": (f"{mean(turn_counts):.1f} ({min(turn_counts)}-{max(turn_counts)})"
                                               if turn_counts else "n/a"),
        "act mix": " ".join(f"{a[-2:]} {100 * acts[a] / len(turns):.0f}%" for a in ACT_TAGS) if turns else "n/a",
        "staff utterance chars (no link-only turns), mean / p90": _mean_p90([len(t.send_content) for t in staff]),
        "user utterance chars, mean / p90": _mean_p90([len(t.send_content) for t in said
                                                       if t.sender_type != STAFF]),
        "系统解释 chars, mean / max": _mean_max([len(t.send_content) for t in explain]),
        "utterances repeated verbatim across the corpus": _pct(sum(verbatim[t.send_content] > 1 for t in said),
                                                               len(said)),
        "utterances sharing a frame once values are blanked": _pct(sum(frame_counts[f] > 1 for f in frames),
                                                                   len(frames)),
        "系统推荐 turns inside runs of 2+ recommendations": _pct(in_runs, len(recs)),
        "系统推荐 turns carrying more than one item": _pct(sum(len(t.rec_item_id) > 1 for t in recs), len(recs)),
        "items recommended per dialogue, mean (min-max)": f"{mean(n_items):.1f} ({min(n_items)}-{max(n_items)})",
        "系统解释 with no recommendation before it": _pct(explain_orphans, len(explain)),
        "dialogues ending on a staff turn": _pct(sum(d.dialogue[-1].sender_type == STAFF for d in dialogues
                                                     if d.dialogue), len(dialogues)),
        "用户反馈 turns that state a need (carry attributes)": _pct(sum(bool(t.attributes) for t in feedback),
                                                                 len(feedback)),
        "staff turns with 亲 / 呢 / ？ (no link-only turns)": " / ".join(
            _pct(sum(ch in t.send_content or (ch == "？" and "?" in t.send_content) for t in staff), len(staff))
            .split(" ")[0] for ch in ("亲", "呢", "？")),
        "candidates with no knowledge beyond price (of those in item_kg)": (
            _pct(bare, len(known)) + (f"; {len(candidates) - len(known)} not in item_kg"
                                      if len(known) < len(candidates) else "")),
    }
    return out


def attribute_keys(corpus: Corpus) -> dict[str, list[tuple[str, int]]]:
    """Per category: annotated attribute keys with their span counts, most frequent first."""
    per: dict[str, Counter] = {}
    for _s, d in corpus.all_dialogues():
        per.setdefault(d.domain, Counter()).update(a.key for t in d.dialogue for a in t.attributes)
    return {domain: counts.most_common() for domain, counts in sorted(per.items())}


def _bootstrap(values: list[float], seed: int = 0, rounds: int = 2000) -> tuple[float, float]:
    """A 95% percentile interval of the mean of `values`."""
    if not values:
        return 0.0, 0.0
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def lexicon_transfer(train_corpus: Corpus, eval_corpus: Corpus, eval_splits=SPLITS) -> dict:
    """Understanding F1 of the lexicon matcher fit on train_corpus's train split, scored on eval_corpus.

    Returns {'f1', 'precision', 'recall', 'n', 'ci95': (lo, hi)}; the interval is a seeded bootstrap
    over the scored samples.
    """
    matcher = LexiconMatcher().fit(build_samples(train_corpus, "train", ["understand"]))
    f1, p, r = get_metric("f1"), get_metric("precision"), get_metric("recall")
    rows = []
    for split in eval_splits:
        for s in build_samples(eval_corpus, split, ["understand"]):
            pred = matcher.predict(s.current.text, s.domain)
            rows.append((f1(pred, s.target), p(pred, s.target), r(pred, s.target)))
    if not rows:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0, "n": 0, "ci95": (0.0, 0.0)}
    f1s = [x[0] for x in rows]
    return {"f1": mean(f1s), "precision": mean(x[1] for x in rows), "recall": mean(x[2] for x in rows),
            "n": len(rows), "ci95": _bootstrap(f1s)}


def compare(real: Corpus, other: Corpus) -> list[Row]:
    """The report's rows: the profile of each corpus, the attribute keys per category, lexicon transfer."""
    a, b = corpus_profile(real), corpus_profile(other)
    rows = [Row(label, a[label], b[label]) for label in a]
    keys_a, keys_b = attribute_keys(real), attribute_keys(other)
    for domain in sorted(set(keys_a) | set(keys_b)):
        def show(keys):
            return ", ".join(f"{k} {n}" for k, n in keys.get(domain, [])) or "-"
        rows.append(Row(f"attribute keys, {domain}", show(keys_a), show(keys_b)))

    def transfer(t: dict) -> str:
        lo, hi = t["ci95"]
        return f"F1 {t['f1']:.3f} (95% {lo:.2f}-{hi:.2f}; P {t['precision']:.3f} R {t['recall']:.3f}; n {t['n']})"

    rows.append(Row("lexicon of this corpus's train split, scored on the real corpus (all splits)",
                    transfer(lexicon_transfer(real, real)), transfer(lexicon_transfer(other, real))))
    rows.append(Row("lexicon of this corpus's train split, scored on its own test split",
                    transfer(lexicon_transfer(real, real, ("test",))),
                    transfer(lexicon_transfer(other, other, ("test",)))))
    return rows
