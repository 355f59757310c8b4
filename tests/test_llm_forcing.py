"""Jump-forward decoding of tool calls (llm/forcing.py): what the format forces, and decoding that takes
the forced tokens gives the same tokens whether they go through one at a time, in one pass, or through
model.generate."""
import pytest
import torch

from llm.forcing import ToolCallGrammar
from llm.inference import LLM, _ForcedTokens
from llm.parsing import format_tool_call, parse_tool_calls
from llm.prompts import PromptSettings
from tests.test_llm_decoding import _hf, _left_padded, _qwen2

GRAMMAR = ToolCallGrammar({"lookup_item": ["rank"], "lookup_brand": ["brand"], "recommend_items": ["k", "keep"],
                           "extract_needs": []})


def _write(call: str, grammar: ToolCallGrammar = GRAMMAR) -> tuple[int, int]:
    """Write `call` as a model following it would, taking every forced piece: (characters the model
    chose, forced pieces); every forced piece must be what the call says next."""
    text, chosen, pieces = "", 0, 0
    while text != call:
        forced = grammar.forced(text)
        if forced:
            assert call.startswith(text + forced), (text, forced)
            text, pieces = text + forced, pieces + 1
        else:
            text, chosen = text + call[len(text)], chosen + 1
    return chosen, pieces


@pytest.mark.parametrize("name,args", [("lookup_item", {"rank": 1}), ("extract_needs", {}),
                                       ("recommend_items", {"k": 3, "keep": ["a", "b{"]}),
                                       ("lookup_brand", {"brand": "雅诗\"兰黛}"})])
def test_forced_pieces_are_what_the_call_says_next(name, args):
    call = format_tool_call(name, args)
    chosen, pieces = _write(call)
    assert parse_tool_calls(call, list(GRAMMAR.params)).tool_calls[0]["args"] == args
    fixed = len(call) - sum(len(str(v)) + 2 * isinstance(v, str) for v in args.values())
    assert chosen < len(call) / 3 and pieces >= 3 and fixed > 40


def test_where_the_model_chooses_nothing_is_forced():
    assert GRAMMAR.forced("") == "" and GRAMMAR.forced("好的") == ""
    assert GRAMMAR.forced("好的<") == ""  # a lone '<' may begin text
    assert GRAMMAR.forced("<t") == 'ool_call>{"name": "'
    assert GRAMMAR.forced('<tool_call>{"name": "lookup_') == ""  # lookup_item or lookup_brand
    assert GRAMMAR.forced('<tool_call>{"name": "lookup_i') == 'tem", "arguments": {'
    assert GRAMMAR.forced('<tool_call>{"name": "unknown", "arguments": {"') == ""
    assert GRAMMAR.forced('<tool_call>{"name": "recommend_items", "arguments": {"') == ""  # k or keep
    assert GRAMMAR.forced('<tool_call>{"name": "recommend_items", "arguments": {"ke') == 'ep": '
    assert GRAMMAR.forced('<tool_call>{"name": "recommend_items", "arguments": {"keep": [1], "') == 'k": '
    assert GRAMMAR.forced('<tool_call>{"name": "lookup_item", "arguments": {"rank": 2}') == "}</tool_call>"
    assert GRAMMAR.forced('<tool_call>{"name": "lookup_item", "arguments": {"rank": 2}}</tool_call>') == ""
    assert GRAMMAR.forced('<tool_call>{"name": "lookup_item", "arguments": {"rank": "}') == ""  # in a string


def _forcing_rule(row: int, ids: list[int]) -> list[int]:
    """After a token divisible by 7 (not one it forced), three fixed tokens."""
    return [3, 4, 5] if ids and ids[-1] % 7 == 0 and ids[-1] not in (3, 4, 5) else []


@pytest.mark.parametrize("lengths", [[17], [9, 31, 20]])
def test_forced_tokens_are_the_same_in_one_pass_one_by_one_and_through_model_generate(lengths):
    model = _qwen2()
    ids, mask = _left_padded(lengths)
    from llm.decoding import lean_decoder
    from transformers import LogitsProcessorList

    lean = lean_decoder(model)
    got = lean.generate(ids, mask, 30, 2, 0, force_row=_forcing_rule)
    with torch.inference_mode():
        expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=30, do_sample=False,
                                  num_beams=1, pad_token_id=0, eos_token_id=2,
                                  logits_processor=LogitsProcessorList([_ForcedTokens(_forcing_rule, ids.shape[1])]))
    assert torch.equal(got, expected)
    new = got[:, ids.shape[1]:].tolist()
    assert any(row[i:i + 3] == [3, 4, 5] for row in new for i in range(len(row)))  # the rule fired
    assert not torch.equal(got, _hf(model, ids, mask, 30, eos=2))  # and changed the output
    for row, n in enumerate(lengths):  # one row alone takes the forced tokens in one pass: the same tokens
        alone = lean.generate(ids[row:row + 1, -n:], mask[row:row + 1, -n:], 30, 2, 0, force_row=_forcing_rule)
        assert alone[0, n:].tolist() == [t for t in new[row]][:alone.shape[1] - n]


@pytest.mark.parametrize("bare", [True, False])
def test_llm_generate_takes_the_forced_text(bare):
    from llm.model import build_embedded_model, build_tokenizer

    tok = build_tokenizer(["有没有保湿的面霜", '<tool_call>{"name": "lookup_item", "arguments": {"rank": 1}}</tool_call>'])
    torch.manual_seed(0)
    llm = LLM(build_embedded_model(tok, "tiny"), tok, PromptSettings(max_length=256))
    llm.bare_decoding = bare
    text = llm.generate(["有没有保湿的面霜"], max_new_tokens=60, forced=lambda t: "<tool_call>" if t == "" or
                        t.endswith("</tool_call>") else GRAMMAR.forced(t))[0]
    assert text.startswith('<tool_call>{"name": "')  # forced from the first token on
