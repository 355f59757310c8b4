"""The simulated shopper (uneed/simulator.py) and `presales simulate` over real tiny models."""
import random

import pytest

from agent.policy import is_acceptance, is_rejection
from eval.simulate import PopularPolicy, SimulateArgs, run_episode, simulate, write_report
from uneed.corpus import load_corpus
from uneed.simulator import SimulatedShopper, sample_episodes
from uneed.synth import default_lexicon


@pytest.fixture(scope="module")
def corpus(tiny_corpus_dir):
    return load_corpus(tiny_corpus_dir)


def test_the_shopper_states_only_its_targets_values_and_accepts_its_target(corpus):
    lex = default_lexicon()
    items = list(corpus.items)
    rng = random.Random(7)
    episodes = sample_episodes(corpus, 40, seed=3)
    assert {e.domain for e in episodes} == set(corpus.domains)
    for episode in episodes:
        shopper = SimulatedShopper.for_episode(episode, corpus.items)
        said = [shopper.opening()]
        attributes = lex.attributes(episode.domain) + ["不存在的属性"]
        for _ in range(6):  # questions about anything, wrong items of any kind, turns that ask nothing
            said.append(shopper.answer(rng.sample(attributes, 2)))
            accepted, text = shopper.react(rng.choice([i for i in items if i != episode.target]), corpus.items,
                                           episode.target)
            assert not accepted and is_rejection(text) and not is_acceptance(text)
            said.append(text)
            said.append(shopper.volunteer())
        accepted, text = shopper.react(episode.target, corpus.items, episode.target)
        assert accepted and is_acceptance(text) and not is_rejection(text)
        assert shopper.stated, "the shopper said nothing about its target"
        for attr, value in shopper.stated:  # every stated need is a value the target has
            assert value in shopper.facts[attr], (episode.target, attr, value)
        assert not any(episode.target in text for text in said)  # it never names the item
        assert not any("不存在的属性" in text for text in said)


def test_surface_forms_vary_and_name_the_stated_value(corpus):
    lex = default_lexicon()
    episode = sample_episodes(corpus, 1, seed=0)[0]
    shopper = SimulatedShopper.for_episode(episode, corpus.items)
    attr = next(a for a, vs in shopper.facts.items() if len(lex.forms(episode.domain, a, vs[0])) > 2)
    forms = {shopper.surface(attr, shopper.facts[attr][0]) for _ in range(60)}
    assert len(forms) > 1
    assert all(lex.canonical(episode.domain, attr, f) == (shopper.facts[attr][0], False) for f in forms)


def test_a_wrong_item_is_turned_down_by_the_attribute_that_differs(corpus):
    episode = sample_episodes(corpus, 1, seed=5)[0]
    shopper = SimulatedShopper.for_episode(episode, corpus.items)
    other = next(i for i, item in corpus.items.items() if i != episode.target and shopper.differences(item.knowledge))
    diffs = shopper.differences(corpus.items[other].knowledge)
    _, text = shopper.react(other, corpus.items, episode.target)
    assert any(a in text for a in diffs)
    attr, value = shopper.stated[-1]
    assert attr in diffs and value in shopper.facts[attr]


def test_a_fixed_seed_gives_the_same_episodes_and_words(corpus):
    def play(seed):
        episodes = sample_episodes(corpus, 12, seed=seed)
        words = []
        for e in episodes:
            s = SimulatedShopper.for_episode(e, corpus.items)
            words += [s.opening(), s.answer(["价位", "颜色"]), s.react(next(iter(corpus.items)), corpus.items, e.target)[1]]
        return episodes, words

    assert play(1) == play(1)
    assert play(1)[0] != play(2)[0]
    assert len({e.source for e in sample_episodes(corpus, 12, seed=1)}) == len(corpus.split("test"))


def test_the_popular_policy_finds_a_popular_target_at_once(corpus):
    policy = PopularPolicy(corpus)
    episode = sample_episodes(corpus, 1, seed=0)[0]
    top = policy.ranked[episode.domain][0]
    found = run_episode(policy, episode.__class__(**{**episode.__dict__, "target": top}), corpus.items, 5)
    assert found["success"] and found["turns"] == 1 and found["target_rank_last"] == 0
    second = policy.ranked[episode.domain][1]
    found = run_episode(policy, episode.__class__(**{**episode.__dict__, "target": second}), corpus.items, 5)
    assert found["success"] and found["turns"] == 2 and found["recommendations"] == 2
    assert "不" in found["transcript"][2]["text"] or "换" in found["transcript"][2]["text"]


def test_simulate_end_to_end(agent_run, tmp_path):
    report = simulate(SimulateArgs(run=str(agent_run), graph="both", episodes=6, max_turns=4, seed=1, workers=3,
                                   progress=False))
    assert list(report["policies"]) == ["graph llm", "graph crs", "popular", "ask-random+crs"]
    targets = None
    for name, p in report["policies"].items():
        assert p["failed"] == 0 and len(p["episodes"]) == 6
        mine = [e["target"] for e in p["episodes"]]
        targets = targets or mine
        assert mine == targets  # the same episodes for every policy
        row = p["summary"]["all"]
        assert 0.0 <= row["success"] <= 1.0 and row["episodes"] == 6
        for e in p["episodes"]:
            agent_turns = [t for t in e["transcript"] if t["speaker"] == "agent"]
            assert len(agent_turns) <= 4 + e["success"]
            assert e["success"] == any(e["target"] in t.get("items", []) for t in agent_turns)
    assert report["policies"]["ask-random+crs"]["summary"]["all"]["questions"] == pytest.approx(3.0, abs=1.0)
    assert report["policies"]["popular"]["summary"]["all"]["questions"] == 0.0
    out = write_report(report, tmp_path / "sim")
    text = out["md"].read_text(encoding="utf-8")
    assert "| graph llm | 6 |" in text and "## Transcripts" in text and "shopper: " in text
    assert len(out["jsonl"].read_text(encoding="utf-8").splitlines()) == 24
