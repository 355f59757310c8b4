"""Output parsers never raise on malformed text; they keep what parses."""
import pytest

from llm.parsing import (ParseStats, format_tool_call, parse_elicit, parse_respond,
                         parse_tool_calls, parse_understand)

GARBAGE = ["", None, 42, "：：；；", "###", "\x00\x01", "<tool_call>", "}{", "A" * 5000, "品类", "；；品类：面霜；"]


@pytest.mark.parametrize("text", GARBAGE)
def test_parsers_never_raise(text):
    stats = ParseStats()
    assert isinstance(parse_understand(text, stats), list)
    assert isinstance(parse_elicit(text, stats), list)
    assert isinstance(parse_respond(text, stats), str)
    assert isinstance(parse_tool_calls(text).content, str)
    assert stats.total == 3


def test_understand_and_elicit():
    assert parse_understand("品类：面霜；功效：保湿") == ["品类：面霜", "功效：保湿"]
    stats = ParseStats()
    assert parse_understand("品类:面霜;乱码;功效：\n### 指令：后面的不要", stats) == ["品类：面霜", "功效："]
    assert stats.malformed == 1
    assert parse_elicit("价位；品牌：耐克；价位") == ["价位", "品牌"]
    assert parse_elicit("") == []


def test_tool_calls_valid_and_invalid():
    text = ('好的，我查一下<tool_call>{"name": "search", "arguments": {"q": "面霜"}}</tool_call>'
            '<tool_call>{"name": "search", "args": "{\\"q\\": \\"水乳\\"}"}</tool_call>')
    p = parse_tool_calls(text, ["search"])
    assert p.content == "好的，我查一下"
    assert [c["args"] for c in p.tool_calls] == [{"q": "面霜"}, {"q": "水乳"}]
    assert all(c["id"] and c["type"] == "tool_call" for c in p.tool_calls) and not p.invalid_tool_calls
    assert parse_tool_calls(format_tool_call("search", {"q": 1})).tool_calls[0]["args"] == {"q": 1}

    bad = {
        '<tool_call>{"name": "search", "arguments": {"q": </tool_call>': "not JSON",
        '<tool_call>{"arguments": {}}</tool_call>': "no 'name'",
        '<tool_call>{"name": "nope", "arguments": {}}</tool_call>': "unknown tool",
        '<tool_call>{"name": "search", "arguments": [1]}</tool_call>': "must be a JSON object",
        '<tool_call>{"name": "search", "arguments": {}}': "unclosed",
        '<tool_call>[1, 2]</tool_call>': "JSON object",
    }
    for text, error in bad.items():
        p = parse_tool_calls(text, ["search"])
        assert not p.tool_calls, text
        assert len(p.invalid_tool_calls) == 1 and error in p.invalid_tool_calls[0]["error"], text
        assert set(p.invalid_tool_calls[0]) >= {"name", "args", "id", "error"}
    # trailing junk after the object still parses
    p = parse_tool_calls('<tool_call>{"name": "search", "arguments": {"q": "x"}} 多余</tool_call>', ["search"])
    assert p.tool_calls and p.tool_calls[0]["args"] == {"q": "x"}
