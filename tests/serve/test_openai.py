"""The official ``openai`` client talks to the server over a real socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from refrag_agent.budget import Budget
from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.server import ServerThread
from refrag_agent.template import REFRAG_TEMPLATE
from refrag_agent.training.tasks import TaskExample, make_example

from .conftest import MakeServer
from .util import FACTS, NAME, chunks_part

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is my locker code?"},
]
ROLES = {"tool_output": "tool"}  # a task segment's kind -> the message role that carries it


def connect(url: str, api_key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=api_key, max_retries=0)


def task_messages(task: TaskExample) -> list[Any]:
    """A task's conversation and question as OpenAI messages."""
    messages = [{"role": ROLES.get(s.kind, s.kind), "content": s.text} for s in task.segments]
    return [*messages, {"role": "user", "content": task.question}]


def no_template_tokens(text: str | None) -> bool:
    return not any(t in (text or "") for t in REFRAG_TEMPLATE.special_tokens)


def test_streamed_and_not(make_server: MakeServer) -> None:
    with ServerThread(make_server(api_key="sekret")) as running:
        client = connect(running.url, "sekret")
        assert [m.id for m in client.models.list()] == [NAME]

        whole = client.chat.completions.create(
            model=NAME, messages=MESSAGES, max_tokens=12, temperature=0
        )
        choice, usage = whole.choices[0], whole.usage
        assert choice.finish_reason in ("stop", "length") and no_template_tokens(
            choice.message.content
        )
        assert usage is not None and 1 <= usage.completion_tokens <= 12
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        extra = usage.model_extra or {}
        # two short messages: both are last turns or system, so nothing is compressed
        assert extra["positions_fed"] == usage.prompt_tokens == extra["tokens_held"]
        assert extra["chunks_compressed"] == 0

        stream = client.chat.completions.create(
            model=NAME,
            messages=MESSAGES,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, reasons, last_usage = [], [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            if chunk.choices and chunk.choices[0].finish_reason:
                reasons.append(chunk.choices[0].finish_reason)
            if chunk.usage is not None:
                last_usage = chunk.usage
        assert "".join(pieces) == (choice.message.content or "")  # greedy: the same answer
        assert reasons == [choice.finish_reason]
        assert last_usage == usage


def test_compressed_content_and_budget(make_server: MakeServer, serve_model: RefragModel) -> None:
    with ServerThread(make_server()) as running:
        content = [chunks_part(serve_model), {"type": "text", "text": "Which room?"}]
        reply = connect(running.url).chat.completions.create(
            model=NAME,
            messages=[{"role": "user", "content": content}],  # type: ignore[misc,list-item]
            max_tokens=4,
            temperature=0,
            extra_body={"refrag": {"budget": {"tokens": 32}, "policy": "similarity"}},
        )
        extra = reply.usage.model_extra if reply.usage else {}
        # two chunks of 16 tokens, and the question: the last turn, always tokens
        assert extra is not None
        assert extra["chunks_expanded"] == 2 + len(serve_model.chunk("Which room?"))
        assert extra["chunks_compressed"] == len(serve_model.chunk(FACTS)) - 2
        assert extra["tokens_held"] > extra["positions_fed"]


def conversation(turns: int) -> list[Any]:
    messages: list[Any] = [{"role": "system", "content": "Answer briefly."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Remember that box {i} holds {FACTS}"})
        messages.append({"role": "assistant", "content": f"Noted everything about box {i}."})
    return [*messages, {"role": "user", "content": "What is in box 2?"}]


def test_plain_messages_are_compressed_under_the_budget(make_server: MakeServer) -> None:
    """Older turns go in as chunk embeddings; the request's budget, else the server's
    default, says how many of them the policy expands back."""

    def usage(server_budget: Budget | None, **fields: Any) -> dict[str, Any]:
        with ServerThread(make_server(budget=server_budget)) as running:
            reply = connect(running.url).chat.completions.create(
                model=NAME, messages=conversation(6), max_tokens=2, temperature=0, **fields
            )
        assert reply.usage is not None
        return {"prompt_tokens": reply.usage.prompt_tokens, **(reply.usage.model_extra or {})}

    compressed = usage(None)
    assert compressed["chunks_compressed"] > 0
    assert compressed["prompt_tokens"] == compressed["positions_fed"]
    assert compressed["positions_fed"] < compressed["tokens_held"] // 4
    some = usage(None, extra_body={"refrag": {"budget": {"tokens": 64}}})
    assert some["tokens_held"] == compressed["tokens_held"]
    assert compressed["positions_fed"] < some["positions_fed"] <= compressed["positions_fed"] + 64
    everything = {"refrag": {"budget": {"p": 1}}}
    for expanded in (usage(Budget(p=1.0)), usage(None, extra_body=everything)):
        assert expanded["chunks_compressed"] == 0
        assert expanded["positions_fed"] == expanded["tokens_held"] == compressed["tokens_held"]
    overridden = usage(Budget(p=1.0), extra_body={"refrag": {"budget": {"tokens": 0}}})
    assert overridden["positions_fed"] == compressed["positions_fed"]


@pytest.fixture(scope="module")
def bundled_url(bundled_model: RefragModel) -> Iterator[str]:
    from refrag_agent.serve.app import RefragServer

    server = RefragServer(bundled_model, name=NAME)
    with ServerThread(server) as running:
        yield running.url


def test_answers_stop_at_the_template_end(bundled_url: str) -> None:
    task = make_example("memory_qa", 0, size=8)
    reply = connect(bundled_url).chat.completions.create(
        model=NAME,
        messages=task_messages(task),
        max_tokens=16,
        temperature=0,
        extra_body={"refrag": {"budget": {"p": 1}}},
    )
    choice = reply.choices[0]
    assert (choice.message.content, choice.finish_reason) == (task.answer, "stop")
    assert reply.usage is not None and reply.usage.completion_tokens < 16


def tool_schema(name: str, argument: str) -> dict[str, Any]:
    parameters = {"type": "object", "properties": {argument: {"type": "string"}}}
    return {
        "type": "function",
        "function": {"name": name, "parameters": {**parameters, "required": [argument]}},
    }


TOOLS = [
    tool_schema("get_order", "order_id"),
    tool_schema("get_weather", "city"),
    tool_schema("search_docs", "query"),
]


def test_tools_give_tool_calls(bundled_url: str) -> None:
    """The bundled model was trained to call a tool for this question: the call comes back
    as OpenAI ``tool_calls``, streamed or not; without tools it never does."""
    task = make_example("tool_call", 5, size=4)
    expected = json.loads(task.references[0])
    client = connect(bundled_url)

    def ask(**fields: Any) -> Any:
        return client.chat.completions.create(
            model=NAME, messages=task_messages(task), max_tokens=40, temperature=0, **fields
        )

    for choice in ("auto", "required", {"type": "function", "function": {"name": "get_order"}}):
        reply = ask(tools=TOOLS, tool_choice=choice).choices[0]
        assert reply.finish_reason == "tool_calls" and reply.message.content is None
        (call,) = reply.message.tool_calls or []
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name == expected["name"]
        assert json.loads(call.function.arguments) == expected["arguments"]

    stream = ask(tools=TOOLS, stream=True)
    deltas = [c.choices[0] for c in stream if c.choices]
    calls = [t for d in deltas for t in (d.delta.tool_calls or [])]
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls"]
    assert len(calls) == 1 and calls[0].function is not None
    assert calls[0].function.name == expected["name"]
    assert json.loads(calls[0].function.arguments or "") == expected["arguments"]

    for fields in ({"tools": TOOLS, "tool_choice": "none"}, {}):
        reply = ask(**fields).choices[0]
        assert reply.finish_reason == "stop" and not reply.message.tool_calls
        assert no_template_tokens(reply.message.content)

    answered = client.chat.completions.create(  # the client ran the tool: the call goes back
        model=NAME,
        messages=[
            *task_messages(task),
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"status": "shipped"}'},
        ],
        max_tokens=16,
        temperature=0,
        tools=TOOLS,  # type: ignore[arg-type]
    )
    assert answered.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert no_template_tokens(answered.choices[0].message.content)


def test_wrong_key_is_refused(make_server: MakeServer) -> None:
    with (
        ServerThread(make_server(api_key="sekret")) as running,
        pytest.raises(openai.AuthenticationError),
    ):
        connect(running.url, "wrong").models.list()
