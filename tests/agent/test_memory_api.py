"""The mem0 / LangGraph-style memory calls: add_messages, search, get_all, delete."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from refrag_agent import InvalidInput, SegmentKind
from refrag_agent.agent import Agent
from refrag_agent.engines import TINY_MODEL

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "developer", "content": [{"type": "text", "text": "Answer briefly."}]},
    {"role": "user", "name": "alice", "content": "My locker code is 4821. Where is order 7731?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "lookup_order", "arguments": '{"order_id": 7731}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "lookup_eta", "arguments": ""},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_a", "content": '{"order": 7731, "status": "shipped"}'},
    {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "Thursday"}]},
    {"role": "assistant", "content": "Order 7731 has shipped and arrives Thursday."},
]


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    async with Agent.open(model=TINY_MODEL, memory=tmp_path / "memory") as opened:
        yield opened


async def test_add_messages_round_trip(agent: Agent) -> None:
    chat = agent.session(tenant="acme", session="alice-1")
    written = await chat.add_messages(CONVERSATION)
    K = SegmentKind
    assert [s.kind for s in written] == [
        K.SYSTEM, K.SYSTEM, K.USER, K.TOOL_CALL, K.TOOL_CALL, K.TOOL_OUTPUT, K.TOOL_OUTPUT,
        K.ASSISTANT,
    ]  # fmt: skip
    assert [s.seq for s in written] == list(range(8))
    assert all(s.n_chunks >= 1 and s.n_tokens >= 1 for s in written)
    assert written[1].text == "Answer briefly." and written[2].metadata == {"name": "alice"}
    call_a, call_b, out_a, out_b = written[3:7]
    assert json.loads(call_a.text) == {"name": "lookup_order", "arguments": {"order_id": 7731}}
    assert json.loads(call_b.text) == {"name": "lookup_eta", "arguments": {}}
    # Paired as the tool loop pairs them: same metadata on a call and its output.
    assert (
        call_a.metadata == out_a.metadata == {"tool_call_id": "call_a", "tool_name": "lookup_order"}
    )
    assert (
        call_b.metadata == out_b.metadata == {"tool_call_id": "call_b", "tool_name": "lookup_eta"}
    )
    assert out_a.source == "lookup_order" and out_b.text == "Thursday"

    stored = await chat.timeline()
    assert [(s.id, s.kind, s.text, s.metadata) for s in stored] == [
        (s.id, s.kind, s.text, s.metadata) for s in written
    ]
    assert [s.id for s in await chat.get_all()] == [s.id for s in stored]

    # A tool message may answer a call stored by an earlier add_messages, once.
    call = {"id": "call_c", "type": "function", "function": {"name": "refund", "arguments": "{}"}}
    await chat.add_messages([{"role": "assistant", "content": "Refunding.", "tool_calls": [call]}])
    answer = {"role": "tool", "tool_call_id": "call_c", "content": "done"}
    (output,) = await chat.add_messages([answer])
    assert output.metadata == {"tool_call_id": "call_c", "tool_name": "refund"}
    with pytest.raises(InvalidInput, match="already has an output"):
        await chat.add_messages([answer])
    with pytest.raises(InvalidInput, match="is taken"):
        await chat.add_messages([{"role": "assistant", "tool_calls": [call]}])

    class Note(BaseModel):  # any pydantic model that dumps to a message
        role: str = "user"
        content: str
        refusal: str | None = None  # extra keys are ignored

    (note,) = await chat.add_messages([Note(content="Sent from a model.")])
    assert note.kind is SegmentKind.USER and note.text == "Sent from a model."
    assert len(await chat.timeline()) == 12


@pytest.mark.parametrize(
    ("bad", "field", "problem"),
    [
        ({"role": "robot", "content": "hi"}, "role", "is not one of"),
        ({"content": "hi"}, "role", "is not one of"),
        ("hello", "", "must be a dict or a pydantic model"),
        ({"role": "user", "content": "   "}, "content", "must not be empty"),
        ({"role": "user"}, "content", "Field required"),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
            "content",
            "only text is stored",
        ),
        ({"role": "assistant", "content": None}, "", "needs content or tool_calls"),
        (
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{oops"}}],
            },
            "tool_calls[0].function.arguments",
            "not JSON",
        ),
        (
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"arguments": "{}"}}]},
            "tool_calls[0].function.name",
            "Field required",
        ),
        ({"role": "tool", "tool_call_id": "nope", "content": "x"}, "tool_call_id", "no assistant"),
        ({"role": "user", "content": "a\x00b"}, "content", "NUL byte"),
    ],
)
async def test_an_invalid_message_writes_nothing(
    agent: Agent, bad: Any, field: str, problem: str
) -> None:
    chat = agent.session(tenant="acme", session="invalid")
    messages = [*CONVERSATION[:3], bad, CONVERSATION[-1]]
    with pytest.raises(InvalidInput, match=problem) as caught:
        await chat.add_messages(messages)
    assert caught.value.context["index"] == 3 and caught.value.context["field"] == field
    assert str(caught.value).startswith(f"messages[3]{'.' if field else ''}{field}: ")
    assert await chat.timeline() == []
    with pytest.raises(InvalidInput, match="list of messages"):
        await chat.add_messages(CONVERSATION[0])  # type: ignore[arg-type]


async def test_search_returns_segment_text(agent: Agent) -> None:
    chat = agent.session(tenant="acme", session="alice-1")
    await chat.add_messages(CONVERSATION)
    await chat.add_turn("user", "I moved to Lisbon last spring and work as a pastry chef.")
    (hit, *_) = await chat.search("locker code 4821", limit=3)
    assert hit.segment.kind is SegmentKind.USER and "locker code is 4821" in hit.segment.text
    assert "4821" in hit.chunk_text and hit.score > 0
    hits = await chat.search("pastry chef Lisbon", limit=2)
    assert len(hits) <= 2 and "Lisbon" in hits[0].segment.text
    assert len({h.segment.id for h in hits}) == len(hits)  # one hit per segment

    other = agent.session(tenant="acme", session="alice-2")
    assert await other.search("locker code 4821") == []
    (across, *_) = await other.search("locker code 4821", all_sessions=True)
    assert across.segment.scope == chat.scope and "4821" in across.segment.text
    stranger = agent.session(tenant="globex", session="alice-1")
    assert await stranger.search("locker code 4821", all_sessions=True) == []
    with pytest.raises(InvalidInput, match="limit"):
        await chat.search("locker", limit=0)


async def test_delete_removes_from_timeline_search_and_replies(agent: Agent) -> None:
    chat = agent.session(tenant="acme", session="alice-1")
    written = await chat.add_messages(CONVERSATION)
    locker, final = written[2], written[-1]

    with pytest.raises(InvalidInput, match="no such segment") as caught:
        await chat.delete([locker.id, "no-such-id"])
    assert caught.value.context["unknown"] == ["no-such-id"]
    assert len(await chat.timeline()) == len(written)  # nothing deleted

    deleted = await chat.delete(locker.id)
    assert [s.id for s in deleted] == [locker.id]
    ids = [s.id for s in await chat.timeline()]
    assert locker.id not in ids and len(ids) == len(written) - 1
    assert all(h.segment.id != locker.id for h in await chat.search("locker code 4821"))
    reply = await chat.respond("What is my locker code?", max_new_tokens=2)
    assert locker.id not in {u.segment_id for u in reply.plan.segments}

    assert [s.id for s in await chat.delete([final.id, final.id])] == [final.id]
    assert final.id not in {s.id for s in await chat.get_all()}
    with pytest.raises(InvalidInput, match="no such segment"):
        await chat.delete(final.id)
