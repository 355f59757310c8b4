"""LLM prompts: template, loss masking, truncation to the context length, tokenizer coverage."""
import dataclasses

import pytest

from llm.model import build_tokenizer, corpus_texts, load_tokenizer
from llm.prompts import (IGNORE_INDEX, PromptSettings, collate, encode_example, fit_record, render_prompt,
                         resolve_template)
from training.llm import attach_crs, build_examples
from training.llm_base import extra_tokenizer_texts
from uneed.corpus import load_corpus
from uneed.tasks import Utterance, build_samples, letters
from uneed.tasks.llm_format import CRS_INSTRUCTION
from uneed.vocab import unknown_rate


@pytest.fixture(scope="module")
def corpus(tiny_corpus_dir):
    return load_corpus(tiny_corpus_dir)


@pytest.fixture(scope="module")
def tok(corpus):
    return build_tokenizer(corpus_texts(corpus) + extra_tokenizer_texts())


def _real_texts(samples_dir):
    c = load_corpus(samples_dir)
    return corpus_texts(c, ("train", "valid", "test")) + [r for s in ("train", "valid", "test")
                                                         for r in _record_texts(c, s)]


def _record_texts(c, split):
    from uneed.tasks import llm_record

    return [llm_record(s, c.items)["input"] for s in build_samples(c, split) if s.task != "recommend" or s.candidates]


def test_tokenizer_covers_real_samples_and_survives_a_model_dir(tok, samples_dir, tmp_path):
    assert unknown_rate(tok, _real_texts(samples_dir)) < 0.01
    # saved next to a Qwen2 config.json it must load back as the same char tokenizer
    (tmp_path / "config.json").write_text('{"model_type": "qwen2"}')
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    text = "售前对话：[Round 0]\n用户：有没有保湿的面霜 A的价格区间是中"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert len(again(text)["input_ids"]) == len(text)


def test_template_and_masking(tok):
    record = {"instruction": "识别属性。", "input": "售前对话：用户：要面霜", "output": "品类：面霜"}
    prompt = render_prompt(record)
    assert prompt.startswith("### 指令：\n识别属性。") and prompt.endswith("### 回答：\n")
    assert "售前对话：用户：要面霜" in prompt
    ex = encode_example(prompt, record["output"], tok, max_output_tokens=48)
    n_prompt = len(tok(prompt)["input_ids"])
    assert ex["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(ex["input_ids"][n_prompt:-1]) == "品类：面霜"
    cut = encode_example(prompt, "很长的回复" * 10, tok, max_output_tokens=5)
    assert len(cut["input_ids"]) == n_prompt + 5 and tok.eos_token_id not in cut["input_ids"][n_prompt:]
    batch = collate([ex, cut], tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape
    pad = batch["attention_mask"] == 0
    assert (batch["labels"][pad] == IGNORE_INDEX).all()
    with pytest.raises(ValueError):
        resolve_template("no placeholders")


def test_long_dialogue_loses_oldest_turns_only(corpus, tok):
    sample = next(s for s in build_samples(corpus, "train", ["understand"]) if len(s.context) >= 2)
    filler = [Utterance("用户", f"第{i}句很长很长的旧话" * 8, "用户需求") for i in range(30)]
    long = dataclasses.replace(sample, context=filler + sample.context)
    settings = PromptSettings(max_length=384)
    record, note = fit_record(long, corpus.items, tok, settings)
    prompt = render_prompt(record)
    assert note and "dropped" in note
    assert len(tok(prompt)["input_ids"]) <= settings.prompt_budget("understand")
    assert record["instruction"] in prompt
    assert f"当前输入：{sample.current.speaker}：{sample.current.text}" in prompt
    assert sample.context[-1].text in prompt  # the latest turns survive
    assert "第0句" not in prompt  # the oldest went first


def test_context_turns_hold_a_task_to_its_latest_turns(corpus, tok):
    sample = next(s for s in build_samples(corpus, "train", ["understand"]) if len(s.context) >= 3)
    settings = PromptSettings(context_turns={"understand": 1})
    record, note = fit_record(sample, corpus.items, tok, settings)
    assert note is None  # held by the setting, not cut to fit
    assert sample.context[-1].text in record["input"] and "[Round 1]" not in record["input"]
    assert sample.context[0].text not in record["input"]
    assert f"当前输入：{sample.current.speaker}：{sample.current.text}" in record["input"]
    bare, _ = fit_record(sample, corpus.items, tok, PromptSettings(context_turns={"understand": 0}))
    assert "[Round" not in bare["input"] and sample.current.text in bare["input"]
    # other tasks keep their whole dialogue, and the setting survives the saved model config
    elicit = next(s for s in build_samples(corpus, "train", ["elicit"]) if len(s.context) >= 3)
    assert f"[Round {len(elicit.context) - 1}]" in fit_record(elicit, corpus.items, tok, settings)[0]["input"]
    assert PromptSettings.from_dict(settings.to_dict()).context_turns == {"understand": 1}


def test_recommend_keeps_all_candidates(corpus, tok):
    sample = next(s for s in build_samples(corpus, "train", ["recommend"]) if len(s.candidates) == 20)
    settings = PromptSettings(max_length=400)
    record, note = fit_record(sample, corpus.items, tok, settings)
    assert note is not None
    assert len(tok(render_prompt(record))["input_ids"]) <= settings.prompt_budget("recommend")
    for letter in letters(20):
        assert f"{letter}的" in record["input"]
    assert record["output"] in letters(20)


def test_item_relations_caps_the_candidates_but_a_reply_sees_all_of_its_items_knowledge(corpus, tok):
    from uneed.corpus import CATEGORY_RELATION

    settings = PromptSettings(item_relations=1)
    rich = lambda i: sum(r != CATEGORY_RELATION for r in corpus.items[i].knowledge) >= 4 if i in corpus.items else False
    reply = next(s for s in build_samples(corpus, "train", ["respond"]) if s.items and rich(s.items[0]))
    record, note = fit_record(reply, corpus.items, tok, settings)
    assert note is None and corpus.items[reply.items[0]].text() in record["input"]
    rec = next(s for s in build_samples(corpus, "train", ["recommend"]) if s.candidates and rich(s.candidates[0]))
    record, _ = fit_record(rec, corpus.items, tok, settings)
    assert corpus.items[rec.candidates[0]].text() not in record["input"]  # one relation (and the category) each


def test_popularity_letters_the_candidates_of_the_whole_dialogue(corpus, tok):
    """With candidate popularity in the settings, A is the popularity baseline's choice: the most popular
    candidate, the items the dialogue recommended before last, whatever context the prompt keeps; the
    order survives the saved config, and the parse side letters the same way. A CRS ranking wins."""
    from uneed.baselines import PopularityRecommender
    from uneed.tasks.samples import shown_items
    from uneed.tasks.llm_format import lettered_candidates

    baseline = PopularityRecommender().fit(corpus)
    sample = next(s for s in build_samples(corpus, "test", ["recommend"])
                  if shown_items(s) and set(shown_items(s)) & set(s.candidates))
    settings = PromptSettings(candidate_popularity=dict(baseline.counts), context_turns={"recommend": 0})
    record, _ = fit_record(sample, corpus.items, tok, settings)
    assert record["candidates"] == baseline.rank(sample.candidates, shown_items(sample)) != list(sample.candidates)
    assert record["candidates"][-1] in shown_items(sample)  # though the kept context shows no recommendation
    again = PromptSettings.from_dict(settings.to_dict())
    assert lettered_candidates(sample, None, again.candidate_popularity) == record["candidates"]
    ranking = list(reversed(sample.candidates))
    assert fit_record(sample, corpus.items, tok, settings, ranking)[0]["candidates"] == ranking
    assert fit_record(sample, corpus.items, tok, PromptSettings())[0]["candidates"] == list(sample.candidates)


def test_crs_predictions_missing_are_counted(corpus, tok, caplog):
    samples = build_samples(corpus, "train")[:10]
    preds = {s.key: [s.target] if s.task == "recommend" else
             ("；".join(s.target) if isinstance(s.target, list) else s.target) for s in samples[:6]}
    stats = {}
    found = attach_crs(samples, preds, "train", stats)
    assert stats["train"] == {"samples": 10, "with_crs": 6, "missing": 4}
    assert "missing for 4 of 10" in caplog.text
    examples, _ = build_examples(samples, corpus.items, tok, PromptSettings(), found)
    prompts = [tok.decode(e["input_ids"]) for e in examples]
    assert sum(CRS_INSTRUCTION in p for p in prompts) == 6


def test_collate_pads_to_a_multiple_with_masked_labels():
    from llm.prompts import IGNORE_INDEX, collate

    batch = collate([{"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]}, {"input_ids": [8], "labels": [8]}],
                    pad_id=0, multiple=64)
    assert batch["input_ids"].shape == (2, 64)
    assert batch["attention_mask"].sum().item() == 4
    assert (batch["labels"][:, 3:] == IGNORE_INDEX).all() and batch["labels"][0, 1:3].tolist() == [6, 7]
    assert collate([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}], pad_id=0)["input_ids"].shape == (1, 3)
