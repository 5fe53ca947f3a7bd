"""Calls are atomic from the caller's side, and forgetting reaches the plan log.

A respond/stream that fails before the decoder answers stores nothing (no turn, no plan),
an overlong query is rejected before it is stored, size limits come before tokenizing, and
forgetting through the session or the agent leaves none of the text in ``plans.jsonl``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from refrag_agent import Budget, BudgetError, DecoderUnavailable, InvalidInput, SegmentKind
from refrag_agent.agent import PLAN_FILE, Agent, Session
from refrag_agent.engines import TINY_MODEL, ScriptedEngine
from refrag_agent.model.refrag import RefragModel
from refrag_agent.reply import TextDelta
from refrag_agent.tools import tool


@tool
def lookup_order(order_id: int) -> dict[str, Any]:
    """Look an order up by its number."""
    return {"order": order_id, "eta": "Thursday"}


@pytest.fixture
async def scripted(agent_model: RefragModel, tmp_path: Path) -> AsyncIterator[Agent]:
    engine = ScriptedEngine(agent_model, ["Fine."] * 20)
    async with Agent.open(engine=engine, memory=tmp_path / "memory") as opened:
        yield opened


def _engine(agent: Agent) -> ScriptedEngine:
    assert isinstance(agent._engine, ScriptedEngine)
    return agent._engine


def _plans(agent: Agent) -> bytes:
    assert agent.plan_log is not None
    path = agent.plan_log.path
    return path.read_bytes() if path.exists() else b""


async def _state(chat: Session) -> tuple[list[str], bytes]:
    return [s.id for s in await chat.timeline()], _plans(chat.agent)


@pytest.mark.parametrize(
    ("query", "options", "error"),
    [
        ("What now?", {"max_new_tokens": 10**9}, InvalidInput),
        ("What now?", {"budget": "lots"}, BudgetError),
        ("What now?", {"max_new_tokens": "5"}, InvalidInput),
        ("What now?", {"max_new_tokens": 0}, InvalidInput),
        ("What now?", {"tools": [lookup_order], "max_tool_steps": -1}, InvalidInput),
        ("why " * 5000, {}, InvalidInput),
        ("why " * 5000, {"tools": [lookup_order]}, InvalidInput),
        ("   ", {}, InvalidInput),
        ("bad \x00 byte", {}, InvalidInput),
    ],
)
async def test_a_call_that_fails_before_decoding_stores_nothing(
    scripted: Agent, query: str, options: dict[str, Any], error: type[Exception]
) -> None:
    chat = scripted.session(tenant="acme", session="s")
    await chat.add_turn("user", "My locker code is 4821.")
    await chat.respond("Noted?")
    before = await _state(chat)
    for _ in range(2):
        with pytest.raises(error):
            await chat.respond(query, **options)
        with pytest.raises(error):
            async for _event in chat.stream(query, **options):
                pass
    assert await _state(chat) == before
    assert len(_engine(scripted).plans) == 1  # the decoder never ran for them
    for _ in range(2):  # the session is not poisoned: the next calls work
        assert (await chat.respond("And now?")).text == "Fine."
    kinds = [s.kind for s in await chat.timeline()]
    assert kinds == [SegmentKind.USER, *[SegmentKind.USER, SegmentKind.ASSISTANT] * 3]


async def test_the_bundled_model_rejects_an_overlong_query_unstored(tmp_path: Path) -> None:
    # The tiny model's 1,024 positions: 5,000 tokens cannot fit.
    async with Agent.open(model=TINY_MODEL, memory=tmp_path / "memory") as agent:
        chat = agent.session(tenant="acme", session="long")
        await chat.add_turn("user", "hello")
        with pytest.raises(InvalidInput, match="does not fit") as caught:
            await chat.respond("why " * 5000)
        assert caught.value.context["query_tokens"] > caught.value.context["limit"]
        assert [s.text for s in await chat.timeline()] == ["hello"]
        for question in ("why?", "and why not?"):  # the next calls are not poisoned
            reply = await chat.respond(question, max_new_tokens=2)
            assert reply.plan.segments[-1].pinned  # the query, last, as tokens


@pytest.mark.parametrize("with_tools", [False, True])
async def test_an_engine_that_fails_before_answering_stores_nothing(
    agent_model: RefragModel, tmp_path: Path, with_tools: bool
) -> None:
    engine = ScriptedEngine(agent_model, [DecoderUnavailable("server down"), "Fine."])
    tools = [lookup_order] if with_tools else None
    async with Agent.open(engine=engine, memory=tmp_path / "memory") as agent:
        chat = agent.session(tenant="acme", session="s")
        await chat.add_turn("user", "hello")
        before = await _state(chat)
        with pytest.raises(DecoderUnavailable):
            await chat.respond("Where is order 42?", tools=tools)
        assert await _state(chat) == before
        reply = await chat.respond("Where is order 42?", tools=tools)
        assert reply.text == "Fine."
        texts = [s.text for s in await chat.timeline()]
        assert texts == ["hello", "Where is order 42?", "Fine."]


async def test_the_query_is_stored_before_the_first_delta(scripted: Agent) -> None:
    chat = scripted.session(tenant="acme", session="s")
    async for event in chat.stream("Tell me more."):
        assert isinstance(event, TextDelta)
        assert [s.text for s in await chat.timeline()] == ["Tell me more."]
        break
    assert _plans(scripted) == b""  # an abandoned call has no plan and no answer


async def test_size_limits_come_before_tokenizing(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = agent.session(tenant="acme", session="big")
    await chat.add_turn("user", "hello")
    before = await _state(chat)

    def never(text: str) -> None:
        raise AssertionError("an oversized text was tokenized")

    monkeypatch.setattr(agent.model, "chunk", never)
    text = "x" * (agent.store.settings.max_segment_chars + 1)
    writes = {
        "add_document": lambda: chat.add_document(text),
        "add_turn": lambda: chat.add_turn("user", text),
        "add_messages": lambda: chat.add_messages([{"role": "user", "content": text}]),
        "respond": lambda: chat.respond(text),
    }
    for name, write in writes.items():
        with pytest.raises(InvalidInput, match="size limit") as caught:
            await write()
        assert caught.value.context["chars"] == len(text), name
    assert await _state(chat) == before


async def test_forgetting_leaves_no_trace_in_the_plan_log(scripted: Agent) -> None:
    alice = scripted.session(tenant="acme", session="alice", budget=Budget(p=0.5))
    await alice.add_turn("user", "My locker code is 4821.")
    await alice.respond("Is XYZZY-segment my password?")
    await alice.respond("Is XYZZY-session the door code?")
    bob = scripted.session(tenant="acme", session="bob", recall="tenant")
    await bob.respond("What did alice say about XYZZY-recalled?")
    other = scripted.session(tenant="globex", session="carol")
    await other.respond("Is XYZZY-tenant the vault code?")
    kept = scripted.session(tenant="initech", session="dave")
    await kept.respond("Keep KEEP-ME please?")
    log = scripted.plan_log
    assert log is not None and len(log.read()) == 5

    asked = next(s for s in await alice.timeline() if "XYZZY-segment" in s.text)
    assert [s.id for s in await alice.delete(asked.id)] == [asked.id]
    plans = _plans(scripted)
    assert b"XYZZY-segment" not in plans and asked.id.encode() not in plans
    assert b"XYZZY-session" not in plans  # its plan placed the deleted turn too
    await alice.respond("Is XYZZY-session the door code?")

    alice_ids = [s.id for s in await alice.timeline()]
    assert await alice.forget() == len(alice_ids)
    plans = _plans(scripted)
    assert b"XYZZY-session" not in plans and b"alice" not in plans
    assert not any(i.encode() in plans for i in alice_ids)  # bob's recall of them too
    assert await alice.timeline() == [] and await alice.search("XYZZY") == []
    assert await alice.forget() == 0

    assert await scripted.forget_tenant("globex") == 2
    assert await scripted.forget_tenant("globex") == 0
    plans = _plans(scripted)
    assert b"XYZZY-tenant" not in plans and b"globex" not in plans
    assert b"KEEP-ME" in plans and [p.query for p in log.read()] == ["Keep KEEP-ME please?"]
    folder = log.path.parent
    assert not list(folder.glob(f"{PLAN_FILE}.*"))  # no temporary file left behind

    # A session object of a forgotten scope writes again, as a new session.
    await other.add_turn("user", "I am back.")
    await alice.add_turn("user", "Me too.")
    assert [s.text for s in await other.timeline()] == ["I am back."]
    assert [s.text for s in await alice.timeline()] == ["Me too."]
