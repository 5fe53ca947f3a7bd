"""Concurrent requests are batched, and give what the same requests give one at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.server import ServerThread

from .conftest import MakeServer
from .util import URL, chat, chunks_part


def bodies(model: RefragModel) -> list[dict[str, Any]]:
    """32 requests of different lengths and lengths of answer; compressed chunks in some,
    seeded sampling in others, so rows join and leave the batch at different steps."""
    out = []
    for i in range(32):
        words = " ".join(f"fact {j} is {j * 7 % 13}." for j in range(1 + 3 * i))
        content: Any = words if i % 3 else [chunks_part(model), {"type": "text", "text": words}]
        sampling = {"temperature": 0.8, "seed": i} if i % 4 == 1 else {}
        out.append(chat(content, max_tokens=4 + i % 9, ignore_eos=i % 2 == 0, **sampling))
    return out


async def test_32_concurrent_clients_match_sequential_calls(
    make_server: MakeServer, serve_model: RefragModel
) -> None:
    server = make_server(max_batch=16, max_queue=32)
    requests = bodies(serve_model)
    with ServerThread(server) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=60) as client:

            async def ask(body: dict[str, Any]) -> dict[str, Any]:
                response = await client.post(URL, json=body)
                assert response.status_code == 200, response.text
                return dict(response.json())

            sequential = [await ask(body) for body in requests]
            alone = server.scheduler.snapshot()
            concurrent = await asyncio.gather(*(ask(body) for body in requests))
    together = server.scheduler.snapshot()
    assert alone["max_rows"] == 1  # one at a time: each request decoded alone
    assert together["max_rows"] > 1  # concurrently: rows decoded together
    assert together["prefills"] - alone["prefills"] < len(requests)  # prefills shared too
    assert together["failed"] == together["rejected"] == 0
    for one, many in zip(sequential, concurrent, strict=True):
        assert many["refrag"]["token_ids"] == one["refrag"]["token_ids"]
        assert many["choices"][0]["message"] == one["choices"][0]["message"]
        assert many["usage"] == one["usage"]
