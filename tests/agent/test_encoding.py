"""respond encodes its query once, and concurrent sessions share the encoder's calls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from refrag_agent import Budget
from refrag_agent.agent import Agent
from refrag_agent.engines import ScriptedEngine
from refrag_agent.memory import MemoryStore
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.timeline import SegmentKind

NOTES = "The locker code is 4821. The meeting room is Birch, on level 2. " * 6


@pytest.fixture
def encoded(agent_model: RefragModel) -> Iterator[list[list[str]]]:
    """The texts of every call of the model's encoder while the test runs."""
    encoder = agent_model.encoder
    calls: list[list[str]] = []
    original = encoder.encode

    def counting(texts: Sequence[str]) -> torch.Tensor:
        calls.append(list(texts))
        return original(texts)

    encoder.encode = counting  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del encoder.encode


@pytest.mark.parametrize("query", ["Code?", "What is my locker code, and where do we meet?"])
async def test_one_encoder_call_per_query(
    agent_model: RefragModel, tmp_path: Path, encoded: list[list[str]], query: str
) -> None:
    engine = ScriptedEngine(agent_model, ["It is 4821."])
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        chat = agent.session(tenant="acme", session="a")
        await chat.add_document(NOTES, source="notes.md")
        encoded.clear()
        await chat.respond(query, budget=Budget(p=0.25))
    chunks = [c.text for c in agent_model.chunk(query)]
    answer = [c.text for c in agent_model.chunk("It is 4821.")]
    # the query's chunks for the store and the whole query for the policy, in one call
    # (a one-chunk query is its own vector); then the answer's chunks, when it is stored
    assert encoded == [chunks if chunks == [query] else [*chunks, query], answer]


class _Same:
    """The agent's encoder under another identity: the store encodes apart from the
    policy, as before queries were encoded once."""

    def __init__(self, encoder: ChunkEncoder) -> None:
        self.inner = encoder
        self.dim = encoder.dim
        self.fingerprint = encoder.fingerprint

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return self.inner.encode(texts)


async def test_the_policy_reads_the_same_query_vector(
    agent_model: RefragModel, tmp_path: Path
) -> None:
    query = "Which room is the meeting in, and on what level?"
    plans = []
    for name in ("shared", "apart"):
        engine = ScriptedEngine(agent_model, ["Birch."])
        if name == "shared":
            opened = Agent.open(engine=engine, memory=tmp_path / name)
        else:
            store = await MemoryStore.open(tmp_path / name, encoder=_Same(agent_model.encoder))
            opened = Agent.open(engine=engine, memory=store)
        async with opened as agent:
            chat = agent.session(tenant="acme", session="a")
            await chat.add_document(NOTES, source="notes.md")
            plans.append((await chat.respond(query, budget=Budget(p=0.25))).plan)
        if name == "apart":
            await store.aclose()
    shared, apart = plans
    assert [c.expanded for c in shared.chunks] == [c.expanded for c in apart.chunks]
    np.testing.assert_allclose(
        [c.score for c in shared.chunks], [c.score for c in apart.chunks], atol=1e-5
    )


async def test_concurrent_sessions_store_their_own_embeddings(
    agent_model: RefragModel, tmp_path: Path, encoded: list[list[str]]
) -> None:
    n = 8
    queries = [f"Question {i}: what is the code of locker {i * 7}?" for i in range(n)]
    engine = ScriptedEngine(agent_model, [f"Answer {i}." for i in range(n)])
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        chats = [agent.session(tenant="acme", session=f"s{i}") for i in range(n)]
        await asyncio.gather(*(c.respond(q) for c, q in zip(chats, queries, strict=True)))
        assert len(encoded) <= 2 * n  # one call per query and per answer at most
        for chat, query in zip(chats, queries, strict=True):
            (asked,) = [s for s in await chat.timeline() if s.kind is SegmentKind.USER]
            assert asked.text == query
            batch = await agent.store.fetch(chat.scope, [asked.id])
            alone = agent_model.encoder.encode(batch.texts).numpy()
            np.testing.assert_allclose(batch.embeddings, alone, atol=1e-5)
