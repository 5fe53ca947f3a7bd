"""The tool loop inside a session, driven by a scripted decoder and by the real tiny model."""

from __future__ import annotations

from typing import Any

import pytest

from refrag_agent.agent import Agent, ReplyDone
from refrag_agent.model.generation import Generation
from refrag_agent.timeline import SegmentKind
from refrag_agent.tools import ScriptedDecoder, ToolCallEvent, ToolOutputEvent, tool


@tool
def lookup_order(order_id: int) -> dict[str, Any]:
    """Look an order up by its number."""
    return {"order": order_id, "eta": "Thursday"}


@tool
async def broken(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


def _script(agent: Agent, monkeypatch: pytest.MonkeyPatch, outputs: list[str]) -> ScriptedDecoder:
    """Replace the engine's decoding with scripted outputs; layout and memory stay real."""
    decoder = ScriptedDecoder(outputs)

    async def generate(plan: Any, params: Any) -> Generation:
        text = await decoder()
        return Generation(token_ids=[1] * len(text), text=text, finish_reason="stop", ttft_s=0.01)

    monkeypatch.setattr(agent._engine, "generate", generate)
    return decoder


async def test_valid_call_then_answer(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    _script(
        agent,
        monkeypatch,
        [ScriptedDecoder.call("lookup_order", order_id=7731), "It arrives on Thursday."],
    )
    chat = agent.session(tenant="acme", session="tools")
    events = [e async for e in chat.stream("Where is order 7731?", tools=[lookup_order])]
    assert [type(e).__name__ for e in events if not isinstance(e, ReplyDone)][:2] == [
        "ToolCallEvent",
        "ToolOutputEvent",
    ]
    reply = events[-1]
    assert isinstance(reply, ReplyDone) and reply.reply.text == "It arrives on Thursday."
    assert reply.reply.finish_reason == "answer" and len(reply.reply.tool_exchanges) == 1
    timeline = await chat.timeline()
    kinds = [s.kind for s in timeline]
    assert kinds == [
        SegmentKind.USER,
        SegmentKind.TOOL_CALL,
        SegmentKind.TOOL_OUTPUT,
        SegmentKind.ASSISTANT,
    ]
    call, output = timeline[1], timeline[2]
    assert call.metadata["tool_call_id"] == output.metadata["tool_call_id"]
    assert "Thursday" in output.text
    # The second step saw the tool output in its (compressed) context.
    last = reply.reply.plan
    assert SegmentKind.TOOL_OUTPUT in {u.kind for u in last.segments}


@pytest.mark.parametrize(
    ("first", "error_type"),
    [
        ("<|tool_call|>{not json<|end|>", "bad_json"),
        (ScriptedDecoder.call("nope"), "unknown_tool"),
        (ScriptedDecoder.call("lookup_order", order_id="seven"), "validation_error"),
        (ScriptedDecoder.call("broken", reason="boom"), "tool_error"),
    ],
)
async def test_bad_calls_become_readable_errors(
    agent: Agent, monkeypatch: pytest.MonkeyPatch, first: str, error_type: str
) -> None:
    _script(agent, monkeypatch, [first, "Sorry, that failed."])
    chat = agent.session(tenant="acme", session=f"bad-{error_type}")
    reply = await chat.respond("order?", tools=[lookup_order, broken])
    assert reply.text == "Sorry, that failed."
    (exchange,) = reply.tool_exchanges
    assert exchange.output.is_error and exchange.output.error_type == error_type
    outputs = [s for s in await chat.timeline() if s.kind is SegmentKind.TOOL_OUTPUT]
    assert error_type in outputs[0].text


async def test_step_limit(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    call = ScriptedDecoder.call("lookup_order", order_id=1)
    _script(agent, monkeypatch, [call, call, call])
    chat = agent.session(tenant="acme", session="limit")
    reply = await chat.respond("loop", tools=[lookup_order], max_tool_steps=2)
    assert reply.finish_reason == "max_tool_steps" and len(reply.tool_exchanges) == 2


async def test_real_model_with_tools(agent: Agent) -> None:
    chat = agent.session(tenant="acme", session="real-tools")
    await chat.add_turn("user", "Order 7731 was placed on Monday.")
    await chat.add_document("Orders ship within two business days of payment. " * 6)
    events = [
        e async for e in chat.stream("Where is order 7731?", tools=[lookup_order], max_new_tokens=8)
    ]
    done = events[-1]
    assert isinstance(done, ReplyDone)
    # A random-weight model will not produce a call: the loop must end with its answer.
    assert not [e for e in events if isinstance(e, ToolCallEvent | ToolOutputEvent)]
    assert done.reply.finish_reason == "answer"
    assert done.reply.plan.tokens_held > done.reply.plan.positions_fed
