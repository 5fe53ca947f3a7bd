"""Serving: compressed versus full-context requests to one server and model, side by side;
then the same decoder in process, under concurrent sessions of one agent.

One ``refrag-agent serve`` app (uvicorn on loopback, in this process) runs a random-weight
Llama (the latency benchmark's ~50M-parameter shape for the full run, a smaller one for
``--quick``). Every request carries the same context and question: as text (full, one
position per token) or as chunk embeddings computed once and cached, as REFRAG does
(compressed, one position per ``k`` tokens). At each concurrency ``c``, ``c`` clients send
``rounds`` requests each, back to back. Every request decodes exactly ``max_tokens``
tokens (``ignore_eos``), so both modes do the same decoding work.

TTFT is measured by the server from the request's arrival (body, JSON, plan, queue wait,
prefill, first token; only loopback transit is left out); output tokens/s is every
request's tokens over the level's wall time, measured at the clients.

Then the same decoder in process: concurrent sessions of one agent on one
:class:`~refrag_agent.engines.LocalEngine`, and bare engine calls, against one call at a
time (:mod:`refrag_agent.bench.in_process`; ``--in-process`` runs that part alone).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from refrag_agent.bench.common import percentile, run_header, write_json
from refrag_agent.bench.in_process import (
    context_text,
    describe_model,
    format_in_process,
    measure_in_process,
    quick_decoder,
    random_model,
)
from refrag_agent.bench.latency import bench_decoder
from refrag_agent.engines.wire import tensor_to_wire
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.app import RefragServer
from refrag_agent.serve.limits import ServeLimits
from refrag_agent.serve.server import ServerThread

NAME = "bench"
QUESTION = "\nWhat does this code do?"
MODES = ("compressed", "full")


def request_bodies(model: RefragModel, context: str, *, max_tokens: int) -> dict[str, bytes]:
    """The same context and question, as text (full) and as cached chunk embeddings."""
    chunks = model.chunk(context)
    vectors = model.encode(chunks)  # (n_chunks, encoder_dim): computed once, like the cache
    compressed = {
        "type": "refrag_chunks",
        "embeddings": tensor_to_wire(vectors),
        "n_tokens": [c.n_tokens for c in chunks],
    }
    common = {"model": NAME, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    contents: dict[str, Any] = {
        "full": context + QUESTION,
        "compressed": [compressed, {"type": "text", "text": QUESTION}],
    }
    return {
        mode: json.dumps({**common, "messages": [{"role": "user", "content": content}]}).encode()
        for mode, content in contents.items()
    }


async def _level(
    client: httpx.AsyncClient, body: bytes, *, concurrency: int, rounds: int
) -> dict[str, Any]:
    ttfts: list[float] = []
    tokens = 0

    async def one_client() -> None:
        nonlocal tokens
        for _ in range(rounds):
            response = await client.post(
                "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
            )
            response.raise_for_status()
            data = response.json()
            ttfts.append(float(data["refrag"]["ttft_s"]))
            tokens += int(data["usage"]["completion_tokens"])

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "requests": concurrency * rounds,
        "ttft_p50_ms": 1e3 * percentile(ttfts, 50),
        "ttft_p99_ms": 1e3 * percentile(ttfts, 99),
        "output_tokens_per_s": tokens / wall,
    }


async def _measure(
    url: str,
    bodies: dict[str, bytes],
    *,
    warm_up: Sequence[bytes],
    levels: Sequence[int],
    rounds: int,
) -> list[dict[str, Any]]:
    rows = []
    limits = httpx.Limits(max_connections=max(levels) + 4)
    async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits) as client:
        for body in warm_up:  # first calls pay for allocation and kernel choice
            await _level(client, body, concurrency=1, rounds=1)
        bar = tqdm(total=len(MODES) * len(levels), desc="bench serve", unit="level")
        for mode in MODES:
            for c in levels:
                figures = await _level(client, bodies[mode], concurrency=c, rounds=rounds)
                rows.append({"mode": mode, "concurrency": c, **figures})
                bar.update()
        bar.close()
    return rows


def run_serve_bench(
    *,
    quick: bool = False,
    json_path: Path | None = None,
    context_tokens: int | None = None,
    max_tokens: int | None = None,
    rounds: int | None = None,
    levels: Sequence[int] = (1, 4, 16),
    decoder: Any = None,
    encoder: ChunkEncoder | None = None,
    repeats: int = 1,
) -> dict[str, Any]:
    """Measure, print both tables, write JSON; returns the payload. ``repeats``: of the
    in-process part (``refrag-agent bench serve --in-process`` repeats it more)."""
    context_tokens = context_tokens or (2048 if quick else 16_384)
    max_tokens = max_tokens or (16 if quick else 32)
    rounds = rounds or (2 if quick else 1)
    decoder = decoder if decoder is not None else (quick_decoder() if quick else bench_decoder())
    model = random_model(decoder, encoder)
    bodies = request_bodies(model, context_text(context_tokens), max_tokens=max_tokens)
    # Both modes warmed up on a short context: the same kernels, without a 16K prefill.
    short = request_bodies(model, context_text(min(context_tokens, 1024)), max_tokens=2)
    limits = ServeLimits(
        max_batch=max(levels),
        max_queue=max(levels),
        max_tokens=max_tokens,
        max_request_s=3600.0,
        max_batch_positions=4 * (context_tokens + 64),  # four full-context rows per prefill
    )
    server = RefragServer(model, name=NAME, limits=limits)
    with ServerThread(server) as running:
        rows = asyncio.run(
            _measure(
                running.url, bodies, warm_up=list(short.values()), levels=levels, rounds=rounds
            )
        )
    in_process = asyncio.run(
        measure_in_process(
            model,
            context_text(context_tokens),
            levels=levels,
            rounds=rounds,
            max_tokens=max_tokens,
            repeats=repeats,
        )
    )
    tps = {(r["mode"], r["concurrency"]): r["output_tokens_per_s"] for r in rows}
    payload = {
        **run_header("serve"),
        "quick": quick,
        "model": {
            **describe_model(model, "random Llama"),
            "output_tokens": max_tokens,
            "rounds": rounds,
        },
        "context_tokens": context_tokens,
        "rows": rows,
        "throughput_ratio": {str(c): tps[("compressed", c)] / tps[("full", c)] for c in levels},
        "in_process": in_process,
    }
    print(format_table(payload))
    print(format_in_process(payload))
    write_json(json_path, payload)
    return payload


def format_table(payload: dict[str, Any]) -> str:
    head = (
        f"{'concurrency':>11} {'mode':>10} {'requests':>8} {'TTFT p50 ms':>12} "
        f"{'TTFT p99 ms':>12} {'out tok/s':>10} {'ratio':>7}"
    )
    lines = [f"context: {payload['context_tokens']} tokens", head, "-" * len(head)]
    by_level: dict[int, list[dict[str, Any]]] = {}
    for r in payload["rows"]:
        by_level.setdefault(r["concurrency"], []).append(r)
    for c, rows in by_level.items():
        for r in rows:
            ratio = f"{payload['throughput_ratio'][str(c)]:>6.2f}x" if r["mode"] == "full" else ""
            lines.append(
                f"{c:>11} {r['mode']:>10} {r['requests']:>8} {r['ttft_p50_ms']:>12.1f} "
                f"{r['ttft_p99_ms']:>12.1f} {r['output_tokens_per_s']:>10.1f} {ratio:>7}"
            )
    lines.append("(ratio: compressed over full output tokens/s; TTFT measured by the server)")
    return "\n".join(lines)
