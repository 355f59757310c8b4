"""Bare-torch greedy decoding (llm/decoding.py) gives the tokens of `model.generate`, and `LLM.generate`
uses it only where it can."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

from llm.decoding import lean_decoder, unsupported_reason
from llm.inference import LLM
from llm.model import build_tokenizer
from llm.prompts import PromptSettings


def _qwen2(**overrides) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                  tie_word_embeddings=True)
    config.update(overrides)
    model = Qwen2ForCausalLM(Qwen2Config(**config)).eval()
    with torch.no_grad():  # larger weights than the init: sharper logits, fewer near-ties
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    return model


def _left_padded(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, width - n:] = torch.randint(3, 97, (n,), generator=g)
        mask[row, width - n:] = 1
    return ids, mask


def _hf(model, ids, mask, n, eos):
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, do_sample=False, num_beams=1,
                              pad_token_id=0, eos_token_id=eos)


@pytest.mark.parametrize("lengths", [[17], [9, 31, 20], [40, 40]])
def test_bare_decoding_gives_the_tokens_of_model_generate(lengths):
    model = _qwen2()
    ids, mask = _left_padded(lengths)
    lean = lean_decoder(model)
    assert lean is not None
    expected = _hf(model, ids, mask, 24, eos=2)
    got = lean.generate(ids, mask, 24, 2, 0)
    assert torch.equal(got, expected)


def test_a_row_that_ends_is_padded_and_decoding_stops_when_all_have_ended():
    model = _qwen2()
    ids, mask = _left_padded([12, 25, 18], seed=3)
    free = _hf(model, ids, mask, 20, eos=2)
    eos = int(free[0, ids.shape[1] + 2])  # the third token row 0 writes ends it
    expected = _hf(model, ids, mask, 20, eos=eos)
    got = lean_decoder(model).generate(ids, mask, 20, eos, 0)
    assert torch.equal(got, expected)
    row0 = got[0, ids.shape[1]:].tolist()
    end = row0.index(eos)
    assert end <= 2 and all(t == 0 for t in row0[end + 1:])


def test_what_it_does_not_cover_goes_to_model_generate():
    assert "GPT2LMHeadModel" in unsupported_reason(GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16,
                                                                                 vocab_size=50)))
    model = _qwen2()
    model.generation_config.repetition_penalty = 1.3
    assert "repetition_penalty" in unsupported_reason(model)
    assert lean_decoder(model) is None
    assert "sliding" in unsupported_reason(_qwen2(use_sliding_window=True, sliding_window=16, max_window_layers=0))


def test_llm_generate_gives_the_same_text_both_ways():
    tok = build_tokenizer(["有没有保湿的面霜", "预算三百以内", "亲亲，请问是什么肤质呢"])
    torch.manual_seed(0)
    from llm.model import build_embedded_model

    llm = LLM(build_embedded_model(tok, "tiny"), tok, PromptSettings(max_length=256))
    prompts = ["有没有保湿的面霜", "预算三百以内，亲亲", "请问"]
    bare = llm.generate(prompts, max_new_tokens=16, batch_size=2)
    llm.bare_decoding = False
    assert llm.generate(prompts, max_new_tokens=16, batch_size=2) == bare


@pytest.mark.parametrize("bare", [True, False])
def test_a_continuation_that_cannot_open_as_asked_stops_there(bare):
    tok = build_tokenizer(["有没有保湿的面霜", "预算三百以内", "亲亲，请问是什么肤质呢"])
    torch.manual_seed(0)
    from llm.model import build_embedded_model

    llm = LLM(build_embedded_model(tok, "tiny"), tok, PromptSettings(max_length=256))
    llm.bare_decoding = bare
    free = llm.generate(["有没有保湿的面霜"], max_new_tokens=12)[0].lstrip()
    assert len(free) >= 6
    # followed for 3 characters, then the 4th departs: the continuation ends with that character
    assert llm.generate(["有没有保湿的面霜"], max_new_tokens=12, stop_unless_opens_with=free[:3] + "\x00")[0].lstrip() == free[:4]
    # an opening it follows whole: nothing is cut
    assert llm.generate(["有没有保湿的面霜"], max_new_tokens=12, stop_unless_opens_with=free[:5])[0].lstrip() == free


def test_bf16_prefill_runs_the_prompt_pass_in_bfloat16_and_the_steps_in_float32():
    model = _qwen2()
    ids, mask = _left_padded([9, 31, 20])
    lean = lean_decoder(model)
    seen = []
    forward = lean._forward

    def spy(layers, x, *args):
        seen.append((x.shape[1], torch.is_autocast_enabled("cpu")))
        return forward(layers, x, *args)

    lean._forward = spy
    got = lean.generate(ids, mask, 12, 2, 0, bf16_prefill=True)
    assert seen[0] == (31, True) and all(not bf16 for _, bf16 in seen[1:])
    assert got.dtype == torch.long and got.shape[0] == 3 and torch.equal(got[:, :31], ids)
    seen.clear()
    assert torch.equal(lean.generate(ids, mask, 12, 2, 0), _hf(model, ids, mask, 12, eos=2))  # off by default
    assert seen[0] == (31, False)


def _bigrams(tokens):
    return list(zip(tokens, tokens[1:]))


def test_no_repeat_ngram_bans_the_outputs_own_repeats_the_same_way_on_both_paths():
    from transformers import LogitsProcessorList

    from llm.inference import _NoRepeatInOutput

    model = _qwen2()
    ids, mask = _left_padded([14, 22], seed=5)
    width = ids.shape[1]
    free = _hf(model, ids, mask, 40, eos=-1)
    rows = [free[r, width:].tolist() for r in range(2)]
    assert any(len(set(_bigrams(t))) < len(_bigrams(t)) for t in rows)  # greedy repeats itself here
    got = lean_decoder(model).generate(ids, mask, 40, -1, 0, no_repeat_ngram=2)
    with torch.inference_mode():
        expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=40, do_sample=False, num_beams=1,
                                  pad_token_id=0, eos_token_id=-1,
                                  logits_processor=LogitsProcessorList([_NoRepeatInOutput(2, width)]))
    assert torch.equal(got, expected)
    for r in range(2):
        new = got[r, width:].tolist()
        assert len(set(_bigrams(new))) == len(_bigrams(new))


def test_an_llm_reply_never_repeats_a_character_pair_but_may_copy_its_prompt():
    tok = build_tokenizer(["有没有保湿的面霜", "预算三百以内", "亲亲，请问是什么肤质呢"])
    torch.manual_seed(0)
    from llm.model import build_embedded_model

    llm = LLM(build_embedded_model(tok, "tiny"), tok, PromptSettings(max_length=256))
    prompts = ["有没有保湿的面霜保湿的面霜", "预算三百以内"]
    assert all(len(set(t)) < len(t) // 2 for t in llm.generate(prompts, max_new_tokens=30, batch_size=2))  # '霜霜霜'
    for bare in (True, False):
        llm.bare_decoding = bare
        for text in llm.generate(prompts, max_new_tokens=30, batch_size=2, no_repeat_ngram=2):
            pairs = _bigrams(list(text.replace(" ", "")))
            assert len(set(pairs)) == len(pairs), text
    assert PromptSettings().no_repeat("respond") == 2 and PromptSettings().no_repeat("understand") == 0
    # a model saved before the setting existed decodes its replies with it
    assert PromptSettings.from_dict({"template": "zh"}).no_repeat("respond") == 2


def test_an_allowed_token_rule_is_kept_the_same_way_on_both_paths():
    from transformers import LogitsProcessorList

    from llm.inference import _AllowedTokens

    model = _qwen2()
    ids, mask = _left_padded([14, 22], seed=5)
    width = ids.shape[1]

    def odd_after_two(row, new_ids):  # from the third token on, row 0 takes odd ids and row 1 ids under 40
        if len(new_ids) < 2:
            return None
        return list(range(3, 97, 2)) if row == 0 else list(range(3, 40))

    free = lean_decoder(model).generate(ids, mask, 20, -1, 0)[:, width:]
    assert any(t % 2 == 0 for t in free[0, 2:].tolist()) and any(t >= 40 for t in free[1, 2:].tolist())
    got = lean_decoder(model).generate(ids, mask, 20, -1, 0, allowed_row=odd_after_two)
    with torch.inference_mode():
        expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=20, do_sample=False, num_beams=1,
                                  pad_token_id=0, eos_token_id=-1,
                                  logits_processor=LogitsProcessorList([_AllowedTokens(odd_after_two, width)]))
    assert torch.equal(got, expected)
    assert got[0, width:width + 2].tolist() == free[0, :2].tolist()  # free where the rule says None
    assert all(t % 2 == 1 for t in got[0, width + 2:].tolist()) and all(t < 40 for t in got[1, width + 2:].tolist())


def test_understanding_values_are_held_to_spans_of_the_utterance():
    from llm.spans import SpanValues, token_texts

    tok = build_tokenizer(["品类：短靴；价位：300上下", "帮忙看看，想买短靴，预算2000之内", "短袖 老妈 老公"])
    vocab = token_texts(tok)
    utterance = "帮忙看看，想买短靴，预算2000之内"
    rule = SpanValues(tok, [utterance], vocab, [tok.eos_token_id])

    def allowed(answer: str):
        got = rule(0, tok(answer, add_special_tokens=False)["input_ids"])
        return None if got is None else {vocab[i] or "EOS" for i in got}  # the end of sequence has no text

    ends = {"；", ";", "\n", "EOS"}  # what ends a value: a tag separator, a new line, the end
    assert allowed("") is None and allowed("品") is None  # a key: the model's choice
    assert allowed("品类：短") == {"靴"} | ends  # '短袖' is no span of the utterance
    assert allowed("价位：2000") == {"之"} | ends  # nor '2000以内'
    starts = allowed("品类：短靴；价位：")
    assert {"帮", "短", "2", "之"} | ends <= starts and not {"袖", "老", "以"} & starts
    assert allowed("品类：短靴；价") is None  # the next key


def test_understanding_decodes_with_span_values_unless_the_settings_say_not(monkeypatch):
    from llm.inference import make_sample
    from llm.model import build_embedded_model
    from uneed.tasks import Utterance

    tok = build_tokenizer(["品类：短靴", "想买短靴"])
    llm = LLM(build_embedded_model(tok, "tiny"), tok, PromptSettings(max_length=256))
    seen = []
    monkeypatch.setattr(llm, "generate", lambda prompts, *a, **kw: seen.append(kw.get("span_values_of")) or
                        [""] * len(prompts))
    sample = make_sample("understand", current=Utterance("用户", "想买短靴", ""), domain="鞋类行业")
    llm.understand([sample])
    llm.settings.span_values = False
    llm.understand([sample])
    assert seen == [["想买短靴"], None]
    assert PromptSettings.from_dict({"template": "zh"}).span_values  # a model saved before the setting: on
