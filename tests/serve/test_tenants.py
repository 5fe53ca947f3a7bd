"""API keys bound to tenants: a key reads only its tenants' memory, and the answers never
say which tenants or sessions exist. Driven with the official ``openai`` client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from refrag_agent.agent import Agent
from refrag_agent.errors import InvalidInput
from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.auth import ApiKey

from .conftest import MakeServer
from .util import FACTS, NAME


def segments(tenant: str, session: str, ids: list[str]) -> dict[str, Any]:
    return {"type": "refrag_segments", "tenant": tenant, "session": session, "segment_ids": ids}


async def test_keys_read_only_their_tenants(
    make_server: MakeServer, serve_model: RefragModel, tmp_path: Path
) -> None:
    async with Agent.open(model=serve_model, memory=tmp_path / "memory") as agent:
        mine = await agent.session(tenant="t1", session="s1").add_document(FACTS)
        theirs = await agent.session(tenant="t2", session="s1").add_document(FACTS)
        keys = [ApiKey("key-a", frozenset({"t1"})), ApiKey.parse("key-b:t1,t2"), "key-all"]
        server = make_server(api_key=keys, memory=agent.store)
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport) as http:

            async def ask(key: str, *parts: dict[str, Any]) -> Any:
                client = openai.AsyncOpenAI(
                    base_url="http://serve.test/v1", api_key=key, http_client=http, max_retries=0
                )
                content = [*parts, {"type": "text", "text": "code?"}]
                return await client.chat.completions.create(
                    model=NAME,
                    messages=[{"role": "user", "content": content}],
                    max_tokens=4,
                    temperature=0,
                )

            async def refused(error: type[openai.APIStatusError], *args: Any) -> Any:
                with pytest.raises(error) as caught:
                    await ask(*args)
                return caught.value.response.json()

            for key in ("key-a", "key-b", "key-all"):
                reply = await ask(key, segments("t1", "s1", [mine.id]))
                assert (reply.usage.model_extra or {})["chunks_compressed"] == mine.n_chunks
            for key in ("key-b", "key-all"):
                await ask(key, segments("t2", "s1", [theirs.id]))

            # key-a and t2: one 403, whether t2, its session or its segments exist or not
            forbidden = [
                await refused(openai.PermissionDeniedError, "key-a", part)
                for part in (
                    segments("t2", "s1", [theirs.id]),
                    segments("t2", "ghost", [theirs.id]),
                    segments("t2", "s1", ["ghost"]),
                    segments("nobody", "s1", ["ghost"]),
                )
            ]
            both = (segments("t1", "s1", [mine.id]), segments("t2", "s1", [theirs.id]))
            forbidden.append(await refused(openai.PermissionDeniedError, "key-a", *both))
            assert forbidden[0]["error"]["code"] == 403
            assert all(body == forbidden[0] for body in forbidden)

            # within a key's tenants: one 404 for a session, segment or tenant not there
            missing = [
                await refused(openai.NotFoundError, key, part)
                for key, part in (
                    ("key-a", segments("t1", "ghost", [mine.id])),
                    ("key-a", segments("t1", "s1", [theirs.id])),
                    ("key-a", segments("t1", "s1", ["ghost"])),
                    ("key-all", segments("nobody", "s1", [mine.id])),
                    ("key-all", segments("t2", "s1", [mine.id])),
                )
            ]
            assert missing[0]["error"]["code"] == 404
            assert all(body == missing[0] for body in missing)

            await refused(openai.AuthenticationError, "key-c", segments("t1", "s1", [mine.id]))


def test_key_forms() -> None:
    assert ApiKey.parse("k") == ApiKey("k")
    assert ApiKey.parse("k:a, b") == ApiKey("k", frozenset({"a", "b"}))
    assert ApiKey("k").may_read("any") and not ApiKey.parse("k:a").may_read("b")
    for bad in ("", "k:", "k:a,,b", ":a"):
        with pytest.raises(InvalidInput):
            ApiKey.parse(bad)


def test_a_key_given_twice_is_refused(make_server: MakeServer) -> None:
    with pytest.raises(InvalidInput, match="twice"):
        make_server(api_key=["k", ApiKey.parse("k:a")])
