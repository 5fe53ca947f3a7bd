"""Concurrent requests are batched (decoding and encoding), and give what the same requests
give one at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx
import torch

from refrag_agent.memory.encoding import EncodingQueue
from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.app import RefragServer
from refrag_agent.serve.server import ServerThread

from .conftest import MakeServer
from .util import NAME, URL, chat, chunks_part


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


class _Gate:
    """The server's encoder, whose first call waits until ``n`` more requests are queued
    behind it: the moment concurrent requests' texts must share the next encoder call."""

    def __init__(self, server: RefragServer, n: int) -> None:
        self.inner = server.model.encoder
        self.server, self.n = server, n
        self.fingerprint, self.dim = self.inner.fingerprint, self.inner.dim
        self.first = True

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        if self.first:
            self.first = False
            deadline = time.monotonic() + 60
            while len(self.server.encoding._waiting) < self.n and time.monotonic() < deadline:
                time.sleep(0.005)
        return self.inner.encode(texts)


def history(i: int) -> dict[str, Any]:
    """Older turns (compressed, so their chunks are encoded) and a last question."""
    turns = [
        {"role": "user", "content": f"Note {i}: the parcel code is {1000 + i}, keep it."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": f"Also, the room for meeting {i} is {i % 7}B."},
        {"role": "assistant", "content": "Got it."},
        {"role": "user", "content": "What was the parcel code?"},
    ]
    return {"model": NAME, "messages": turns, "max_tokens": 4, "temperature": 0}


async def test_concurrent_requests_share_encoder_calls(
    make_server: MakeServer, serve_model: RefragModel
) -> None:
    # Planning runs in asyncio's default thread pool (6 threads on 2 cores): 5 requests
    # plan at once there, with a thread left for parsing.
    n = 5
    server = make_server(max_batch=16, max_queue=32)
    with ServerThread(server) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=60) as client:
            one = await client.post(URL, json=history(0))
            alone = server.encoding.calls
            server.encoding = EncodingQueue(_Gate(server, n - 1))
            answers = await asyncio.gather(*(client.post(URL, json=history(i)) for i in range(n)))
    assert one.status_code == 200 and alone == 1  # one request: its chunks, one call
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    # The first request's call, then one call for the four that queued behind it.
    assert server.encoding.calls == 2
    assert answers[0].json()["usage"] == one.json()["usage"]
