"""The LangChain chat model: tool schemas in the prompt, tool calls parsed from text, LangGraph ToolNode."""
import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from llm.chat_model import PresalesChatModel, render_messages
from llm.inference import LLM
from llm.model import build_embedded_model, build_tokenizer
from llm.parsing import parse_tool_calls
from llm.prompts import PromptSettings
from training.llm_base import extra_tokenizer_texts


@tool
def search_items(query: str, limit: int = 3) -> str:
    """Search the catalog for items that match the query."""
    return f"{limit} items for {query}"


@pytest.fixture(scope="module")
def chat():
    torch.manual_seed(0)
    tok = build_tokenizer(extra_tokenizer_texts() + ["有没有保湿的面霜"])
    llm = LLM(build_embedded_model(tok, "tiny"), tok, PromptSettings(max_length=512))
    return PresalesChatModel(llm=llm, max_new_tokens=12)


def _graph(model):
    def agent(state):
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([search_items]))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition)
    g.add_edge("tools", END)
    return g.compile()


def test_prompt_renders_tools_and_tool_results():
    from langchain_core.utils.function_calling import convert_to_openai_tool

    msgs = [SystemMessage("你是客服"), HumanMessage("有面霜吗"),
            AIMessage("", tool_calls=[{"name": "search_items", "args": {"query": "面霜"}, "id": "c1"}]),
            ToolMessage("3 items", tool_call_id="c1", name="search_items")]
    prompt = render_messages(msgs, [convert_to_openai_tool(search_items)])
    assert "你是客服" in prompt and '"name": "search_items"' in prompt and "<tool_call>" in prompt
    assert '<tool_response name="search_items">3 items</tool_response>' in prompt
    assert prompt.index("用户：有面霜吗") < prompt.index("<tool_response")


def test_tool_formats_from_json_schemas_to_bare_signatures():
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from llm.chat_model import render_tools

    tools = [convert_to_openai_tool(search_items)]
    json_, compact, brief = (render_tools(tools, f) for f in ("json", "compact", "brief"))
    assert '"description": "Search the catalog' in json_
    assert "search_items(query: string, limit?: integer)：Search the catalog" in compact
    assert "search_items(query, limit)\n" in brief and "Search" not in brief and "integer" not in brief
    assert len(brief) < len(compact) < len(json_)
    assert all("<tool_call>" in text for text in (json_, compact, brief))  # the protocol stays in every format
    with pytest.raises(ValueError, match="tool_format must be one of"):
        render_tools(tools, "short")


def test_parsed_calls_run_in_a_real_toolnode():
    p = parse_tool_calls('查一下<tool_call>{"name": "search_items", "arguments": {"query": "面霜", "limit": 2}}'
                         '</tool_call>', ["search_items"])
    g = StateGraph(MessagesState)
    g.add_node("tools", ToolNode([search_items]))
    g.add_edge(START, "tools")
    g.add_edge("tools", END)
    out = g.compile().invoke({"messages": [AIMessage(content=p.content, tool_calls=p.tool_calls)]})
    result = out["messages"][-1]
    assert isinstance(result, ToolMessage) and result.content == "2 items for 面霜"
    assert result.tool_call_id == p.tool_calls[0]["id"]


def test_real_tiny_model_end_to_end(chat):
    bound = chat.bind_tools([search_items])
    msg = bound.invoke([SystemMessage("你是客服"), HumanMessage("有没有保湿的面霜")])
    assert isinstance(msg, AIMessage) and isinstance(msg.content, str)  # what an untrained model says is noise
    # a forced call: the answer starts with the tool's name, the untrained model writes garbage
    # arguments, and the message says so in invalid_tool_calls instead of raising
    forced = chat.bind_tools([search_items], tool_choice="search_items").invoke("有没有保湿的面霜")
    assert isinstance(forced, AIMessage)
    assert forced.tool_calls or forced.invalid_tool_calls
    assert all(c["error"] for c in forced.invalid_tool_calls)
    # through a LangGraph graph with a ToolNode: no crash whatever the model wrote
    out = _graph(bound).invoke({"messages": [HumanMessage("有没有保湿的面霜")]})
    assert isinstance(out["messages"][1], AIMessage)
    # without tools the text comes back as content
    plain = chat.invoke([HumanMessage("你好")])
    assert isinstance(plain, AIMessage) and not plain.tool_calls


def test_a_model_taught_a_tool_call_makes_it_and_the_toolnode_runs_it():
    """A tiny model fitted to one conversation writes the tool call it was taught: the chat model parses
    it into AIMessage.tool_calls and a ToolNode runs it (the untrained model above says nothing certain)."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from llm.parsing import format_tool_call
    from llm.prompts import encode_example
    from training.llm import answer_loss, collate_batch

    torch.manual_seed(0)
    messages = [SystemMessage("你是客服"), HumanMessage("有没有保湿的面霜")]
    answer = format_tool_call("search_items", {"query": "保湿面霜", "limit": 2})
    tok = build_tokenizer(extra_tokenizer_texts() + ["有没有保湿的面霜", answer])
    model = build_embedded_model(tok, "tiny")
    prompt = render_messages(messages, [convert_to_openai_tool(search_items)])
    example = encode_example(prompt, answer, tok, 96)
    batch = collate_batch([example], [0], tok.pad_token_id, torch.device("cpu"))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):  # about 90 steps
        loss, _ = answer_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if loss.item() < 0.05:
            break
    model.eval()
    bound = PresalesChatModel(llm=LLM(model, tok, PromptSettings(max_length=512)), max_new_tokens=96) \
        .bind_tools([search_items])
    msg = bound.invoke(messages)
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("search_items", {"query": "保湿面霜", "limit": 2})]
    assert not msg.invalid_tool_calls
    out = _graph(bound).invoke({"messages": messages})
    result = out["messages"][-1]
    assert isinstance(result, ToolMessage) and result.content == "2 items for 保湿面霜"
    assert result.tool_call_id == out["messages"][-2].tool_calls[0]["id"]
