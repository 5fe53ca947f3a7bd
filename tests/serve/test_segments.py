"""``refrag_segments``: requests that refer to the server's memory store by segment id."""

from __future__ import annotations

from pathlib import Path

import httpx

from refrag_agent.agent import Agent
from refrag_agent.model.refrag import RefragModel

from .conftest import MakeServer
from .util import FACTS, URL, chat


async def test_segments_from_the_store(
    make_server: MakeServer, serve_model: RefragModel, tmp_path: Path
) -> None:
    async with Agent.open(model=serve_model, memory=tmp_path / "memory") as agent:
        session = agent.session(tenant="acme", session="s1")
        doc = await session.add_document(FACTS * 2, domain="notes")
        turn = await session.add_turn("user", "My locker code is 4821.")
        server = make_server(memory=agent.store)
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve.test") as client:
            ids = [doc.id, turn.id]
            part = {"type": "refrag_segments", "tenant": "acme", "session": "s1"}
            part["segment_ids"] = ids
            content = [part, {"type": "text", "text": "code?"}]
            budget = {"pinned": [turn.id]}
            pinned = await client.post(URL, json=chat(content, refrag={"budget": budget}))
            assert pinned.status_code == 200, pinned.text
            usage = pinned.json()["usage"]
            # the pinned segment in full, and the question (the last turn) as one chunk
            assert usage["chunks_expanded"] == turn.n_chunks + 1
            assert usage["chunks_compressed"] == doc.n_chunks
            text_tokens = usage["tokens_held"] - doc.n_tokens - turn.n_tokens
            assert usage["positions_fed"] == text_tokens + doc.n_chunks + turn.n_tokens

            await agent.session(tenant="other", session="s1").add_turn("user", "hi")
            for tenant in ("other", "nobody"):  # a tenant with memory, and one without
                elsewhere = {**part, "tenant": tenant}  # the ids exist, but in acme's scope
                refused = await client.post(URL, json=chat([elsewhere]))
                assert refused.status_code == 404
                assert "not found" in refused.json()["error"]["message"]
