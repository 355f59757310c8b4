"""Simple baselines that every learned model has to beat, fit on the train split only.

    LexiconMatcher         understanding: the surface strings annotated in train, matched longest first
    MajorityElicitor       elicitation: the attribute asked most often in the domain
    PopularityRecommender  recommendation: candidates ranked by how often users acted on them

    popularity, unseen     recommendation: the same, skipping the items the dialogue already recommended
                           (reported as `recommend_popularity_unseen`: a dialogue shows several items, and
                           the next one is never one it showed)

and one reference that is no baseline, since it reads the gold needs:

    GoldNeedsRule          recommendation: candidates ranked by how many of the sample's annotated needs
                           their knowledge answers, then browsed by the user, then popular - how much the
                           stated needs decide the item on a corpus (reported as `recommend_gold_needs`)
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable, Sequence

from .candidates import by_popularity
from .corpus import Corpus
from .metrics import evaluate, rank_of
from .needs import match_features
from .replies import item_values
from .tasks.samples import TaskSample, build_samples, shown_items
from .tasks.text import split_tag


class LexiconMatcher:
    """Tags every train-annotated value string found in the text with its most frequent attribute."""

    def __init__(self, min_len: int = 1):
        self.min_len = min_len
        self.keys: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))  # domain->value->keys

    def fit(self, samples: Iterable[TaskSample]) -> "LexiconMatcher":
        for s in samples:
            if s.task != "understand":
                continue
            for tag in s.target:
                key, value = split_tag(tag)
                if len(value) >= self.min_len:
                    self.keys[s.domain][value][key] += 1
        return self

    def predict(self, text: str, domain: str) -> list[str]:
        lexicon = self.keys.get(domain, {})
        found: list[tuple[int, int, str]] = []
        # Longest match first; a shorter string inside an accepted match is not tagged again.
        for value in sorted(lexicon, key=len, reverse=True):
            start = text.find(value)
            while start != -1:
                end = start + len(value)
                if not any(s < end and start < e for s, e, _ in found):
                    found.append((start, end, value))
                start = text.find(value, start + 1)
        found.sort()
        tags = [f"{lexicon[v].most_common(1)[0][0]}：{v}" for _, _, v in found]
        return list(dict.fromkeys(tags))


class MajorityElicitor:
    def __init__(self):
        self.counts: dict[str, Counter] = defaultdict(Counter)

    def fit(self, samples: Iterable[TaskSample]) -> "MajorityElicitor":
        for s in samples:
            if s.task == "elicit":
                self.counts[s.domain].update(s.target)
        return self

    def predict(self, domain: str) -> list[str]:
        common = self.counts.get(domain)
        return [common.most_common(1)[0][0]] if common else []


class PopularityRecommender:
    def __init__(self):
        self.counts: Counter = Counter()

    def fit(self, corpus: Corpus) -> "PopularityRecommender":
        """Count the behaviours of train-split users and the train recommendations only, so that a
        test user's own views of the target do not leak into a 'popularity' that is not personal."""
        train_users = {d.userid for d in corpus.split("train")}
        for user in train_users:
            self.counts.update(corpus.behaviours.get(user, ([], []))[1])
        for s in build_samples(corpus, "train", ["recommend"]):
            self.counts[s.target] += 1
        return self

    def rank(self, candidates: Sequence[str], shown: Iterable[str] = ()) -> list[str]:
        """Most popular first; items in `shown` (recommended earlier in the dialogue) last."""
        return by_popularity(candidates, self.counts, shown)


class GoldNeedsRule:
    def __init__(self, corpus: Corpus, popularity: PopularityRecommender):
        self.items, self.popularity = corpus.items, popularity

    def rank(self, sample: TaskSample) -> list[str]:
        browsed = set(sample.behaviours)

        def score(item_id: str) -> tuple:
            exact, contained, share, _ = match_features(sample.needs, item_values(self.items.get(item_id)))
            return (-(exact + contained + 0.5 * share), -(item_id in browsed), -self.popularity.counts[item_id], item_id)

        return sorted(sample.candidates, key=score)


def evaluate_baselines(corpus: Corpus, split: str = "test") -> dict[str, dict]:
    """Metrics of the three baselines on `split`, fit on train; {'understand': {...}, ...}."""
    train = build_samples(corpus, "train", ["understand", "elicit"])
    lexicon = LexiconMatcher().fit(train)
    majority = MajorityElicitor().fit(train)
    popularity = PopularityRecommender().fit(corpus)
    samples = build_samples(corpus, split, ["understand", "elicit", "recommend"])
    out = {}
    und = [s for s in samples if s.task == "understand"]
    out["understand"] = evaluate("understand", [lexicon.predict(s.current.text, s.domain) for s in und],
                                 [s.target for s in und], [s.domain for s in und])
    eli = [s for s in samples if s.task == "elicit"]
    out["elicit"] = evaluate("elicit", [majority.predict(s.domain) for s in eli], [s.target for s in eli],
                             [s.domain for s in eli])
    rec = [s for s in samples if s.task == "recommend" and s.candidates]
    out["recommend"] = evaluate("recommend", [rank_of(s.target, popularity.rank(s.candidates)) for s in rec],
                                [None] * len(rec), [s.domain for s in rec])
    out["recommend_popularity_unseen"] = evaluate(
        "recommend", [rank_of(s.target, popularity.rank(s.candidates, shown_items(s))) for s in rec],
        [None] * len(rec), [s.domain for s in rec])
    rule = GoldNeedsRule(corpus, popularity)
    out["recommend_gold_needs"] = evaluate("recommend", [rank_of(s.target, rule.rank(s)) for s in rec],
                                           [None] * len(rec), [s.domain for s in rec])
    return out
