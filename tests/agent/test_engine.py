"""Agent.open(engine=...): the agent plans, the given engine decodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from refrag_agent import Budget, InvalidInput
from refrag_agent.agent import Agent
from refrag_agent.engines import TINY_MODEL, ScriptedEngine
from refrag_agent.model.refrag import RefragModel
from refrag_agent.reply import ReplyDone, TextDelta
from refrag_agent.timeline import SegmentKind

NOTES = "The locker code is 4821. The meeting room is Birch, on level 2. " * 6


async def test_answers_with_the_engine(agent_model: RefragModel, tmp_path: Path) -> None:
    engine = ScriptedEngine(agent_model, ["It is 4821.", "Birch, level 2."])
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        assert agent.model is agent_model
        chat = agent.session(tenant="acme", session="a")
        await chat.add_document(NOTES, source="notes.md")
        reply = await chat.respond("What is my locker code?", budget=Budget(p=0.25))
        events = [e async for e in chat.stream("And the room?", max_new_tokens=9)]
        timeline = await chat.timeline()
    assert reply.text == "It is 4821."
    (plan, _) = engine.plans
    assert plan.n_positions == reply.plan.positions_fed < plan.n_tokens_held
    assert reply.plan.chunks_expanded > 0 and "[compressed: " in engine.prompts[0]
    assert "What is my locker code?" in engine.prompts[0]
    assert reply.usage.completion_tokens == len(agent_model.tokenizer.encode("It is 4821."))
    assert engine.params[1].max_new_tokens == 9
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.reply.text == "Birch, level 2."
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Birch, level 2."
    assert [s.text for s in timeline if s.kind is SegmentKind.ASSISTANT] == [
        "It is 4821.",
        "Birch, level 2.",
    ]


async def test_the_engine_outlives_the_agent(agent_model: RefragModel, tmp_path: Path) -> None:
    engine = ScriptedEngine(agent_model, ["one", "two"])
    for name in ("first", "second"):
        async with Agent.open(agent_model, tmp_path / name, engine=engine) as agent:
            await agent.session(tenant="t", session="s").respond("hello")
    assert engine.remaining == 0 and len(engine.plans) == 2
    await engine.aclose()


async def test_a_model_and_another_engine_conflict(
    agent_model: RefragModel, tmp_path: Path
) -> None:
    engine = ScriptedEngine(agent_model, [])
    with pytest.raises(InvalidInput, match="not both"):
        await Agent.open(tmp_path / "checkpoint", tmp_path / "memory", engine=engine)
    with pytest.raises(InvalidInput, match="engine="):
        await Agent.open(engine, tmp_path / "memory")


async def test_without_tools_decoding_stops_at_any_template_token(
    agent_model: RefragModel, tmp_path: Path
) -> None:
    engine = ScriptedEngine(agent_model, ["Noted.", "Noted."])
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        chat = agent.session(tenant="acme", session="a")
        await chat.respond("My order number is 7731.")
        await chat.respond("Look my order up.", tools=[_lookup_order])
    without, with_tools = (set(p.stop) for p in engine.params)
    assert {"<|end|>", "<|tool_call|>", "<|user|>"} <= without
    assert "<|end|>" in with_tools and "<|tool_call|>" not in with_tools


def _lookup_order(order_id: int) -> dict[str, int]:
    """Look an order up by its number."""
    return {"order": order_id}


async def test_the_bundled_model_never_stores_a_call_it_was_not_offered(tmp_path: Path) -> None:
    # The bundled tiny model answers statements with tool calls when it can; offered no
    # tools, the call marker ends its answer, so nothing of a call reaches memory.
    async with Agent.open(model=TINY_MODEL, memory=tmp_path) as agent:
        chat = agent.session(tenant="acme", session="a")
        for statement in ("My order number is 7731.", "Please remember my locker code 4821."):
            reply = await chat.respond(statement, max_new_tokens=32)
            assert "<|" not in reply.text
        stored = [s.text for s in await chat.timeline() if s.kind is SegmentKind.ASSISTANT]
    assert all("<|" not in text and '"name"' not in text for text in stored)
