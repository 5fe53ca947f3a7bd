"""The tool loop inside a session, driven by a scripted engine and by the real tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from refrag_agent.agent import Agent
from refrag_agent.budget import Budget
from refrag_agent.engines import ScriptedEngine
from refrag_agent.model.refrag import RefragModel
from refrag_agent.reply import ReplyDone
from refrag_agent.timeline import SegmentKind
from refrag_agent.tools import ToolCallEvent, ToolOutputEvent, tool


@tool
def lookup_order(order_id: int) -> dict[str, Any]:
    """Look an order up by its number."""
    return {"order": order_id, "eta": "Thursday"}


@tool
async def broken(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


async def test_valid_call_then_answer(agent_model: RefragModel, tmp_path: Path) -> None:
    engine = ScriptedEngine(
        agent_model,
        [ScriptedEngine.call("lookup_order", order_id=7731), "It arrives on Thursday."],
    )
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        chat = agent.session(tenant="acme", session="tools")
        events = [e async for e in chat.stream("Where is order 7731?", tools=[lookup_order])]
        timeline = await chat.timeline()
    assert [type(e).__name__ for e in events if not isinstance(e, ReplyDone)][:2] == [
        "ToolCallEvent",
        "ToolOutputEvent",
    ]
    reply = events[-1]
    assert isinstance(reply, ReplyDone) and reply.reply.text == "It arrives on Thursday."
    assert reply.reply.finish_reason == "answer" and len(reply.reply.tool_exchanges) == 1
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
    first_plan, second_plan = engine.plans
    assert second_plan.n_positions == last.positions_fed
    assert second_plan.n_tokens_held > first_plan.n_tokens_held
    assert "Where is order 7731?" in engine.prompts[0]


@pytest.mark.parametrize(
    ("first", "error_type"),
    [
        ("<|tool_call|>{not json<|end|>", "bad_json"),
        (ScriptedEngine.call("nope"), "unknown_tool"),
        (ScriptedEngine.call("lookup_order", order_id="seven"), "validation_error"),
        (ScriptedEngine.call("broken", reason="boom"), "tool_error"),
    ],
)
async def test_bad_calls_become_readable_errors(
    agent_model: RefragModel, tmp_path: Path, first: str, error_type: str
) -> None:
    engine = ScriptedEngine(agent_model, [first, "Sorry, that failed."])
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        chat = agent.session(tenant="acme", session=f"bad-{error_type}")
        reply = await chat.respond("order?", tools=[lookup_order, broken])
        outputs = [s for s in await chat.timeline() if s.kind is SegmentKind.TOOL_OUTPUT]
    assert reply.text == "Sorry, that failed."
    (exchange,) = reply.tool_exchanges
    assert exchange.output.is_error and exchange.output.error_type == error_type
    assert error_type in outputs[0].text


async def test_step_limit(agent_model: RefragModel, tmp_path: Path) -> None:
    call = ScriptedEngine.call("lookup_order", order_id=1)
    engine = ScriptedEngine(agent_model, [call, call, call])
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        chat = agent.session(tenant="acme", session="limit")
        reply = await chat.respond("loop", tools=[lookup_order], max_tool_steps=2)
    assert engine.remaining == 0
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


async def test_the_calls_own_exchanges_are_read_as_tokens(
    agent_model: RefragModel, tmp_path: Path
) -> None:
    engine = ScriptedEngine(
        agent_model,
        [
            ScriptedEngine.call("lookup_order", order_id=7731),
            ScriptedEngine.call("lookup_order", order_id=12),
            "Both arrive on Thursday.",
        ],
    )
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        chat = agent.session(tenant="acme", session="pins")
        await chat.add_tool_output("lookup_order", '{"order": 5, "eta": "Monday"}')
        reply = await chat.respond(
            "Where are orders 7731 and 12?", tools=[lookup_order], budget=Budget(tokens=0)
        )
    # Nothing is expanded by the budget, yet every call and output of this respond is fed
    # as tokens; the older tool output of the session stays compressed.
    uses = {u.kind: [] for u in reply.plan.segments}
    for u in reply.plan.segments:
        uses[u.kind].append(u.pinned)
    assert uses[SegmentKind.TOOL_CALL] == [True, True]
    assert uses[SegmentKind.TOOL_OUTPUT] == [False, True, True]
