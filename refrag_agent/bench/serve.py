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

In process: one :class:`~refrag_agent.agent.Agent` on a :class:`LocalEngine` over the same
decoder, with a memory folder. At each concurrency ``c``, ``c`` new sessions hold the same
context as a document (compressed: the default budget expands nothing beyond the pinned
turns) and ask the question ``rounds`` times each, back to back, with ``respond`` (mode
``agent``). A call plans (store reads, policy), decodes and stores its query and answer;
answers end at the template's stop tokens, like any agent's, so output tokens/s counts the
tokens decoded.
Then ``c`` callers call the same engine's ``generate`` directly with the same compressed
plan (mode ``engine``): the decoding alone, without the agent's planning and writes.
TTFT is the engine's (queue wait, prefill, first token; planning left out); a call's
latency is the whole ``respond`` (or ``generate``). The speedup is output tokens/s at ``c``
over one call at a time (concurrency 1): what sharing prefill and decoding batches gives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from refrag_agent.agent import Agent, Session
from refrag_agent.bench.common import percentile, run_header, write_json
from refrag_agent.bench.latency import VOCAB, bench_decoder
from refrag_agent.engines import BatchLimits, LocalEngine
from refrag_agent.engines.wire import tensor_to_wire
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.decoder import DecoderShape
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.serve.app import RefragServer
from refrag_agent.serve.limits import ServeLimits
from refrag_agent.serve.server import ServerThread

NAME = "bench"
QUESTION = "\nWhat does this code do?"
QUESTION_TURN = f"{QUESTION.strip()}<|end|><|assistant|>"
MODES = ("compressed", "full")


def quick_decoder() -> Any:
    """Random Llama for ``--quick``: 4 layers of width 256, 32K vocabulary."""
    return random_decoder(
        "llama",
        vocab_size=VOCAB,
        hidden_size=256,
        n_layers=4,
        n_heads=4,
        intermediate_size=768,
        max_positions=8192,
    )


def context_text(n_tokens: int) -> str:
    """``n_tokens`` bytes of ASCII source text (one byte-level token each)."""
    source = Path(argparse.__file__).read_text(encoding="utf-8")
    text = source.encode("ascii", errors="ignore").decode("ascii")
    return (text * (n_tokens // len(text) + 1))[:n_tokens]


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


IN_PROCESS_MODES = ("agent", "engine")

# One call of a level's caller ``i``: its TTFT in seconds and its output tokens.
Call = Callable[[int], Awaitable[tuple[float, int]]]


async def _sessions(agent: Agent, name: str, n: int, context: str) -> list[Session]:
    """``n`` new sessions, each holding ``context`` as a document (its chunks are encoded
    once: the store's embedding cache has them after the first)."""
    made = []
    for i in range(n):
        chat = agent.session(tenant="bench", session=f"{name}-{i}")
        await chat.add_document(context, source="context.py")
        made.append(chat)
    return made


def _asking(chats: Sequence[Session], max_tokens: int) -> Call:
    async def ask(i: int) -> tuple[float, int]:
        reply = await chats[i].respond(QUESTION.strip(), max_new_tokens=max_tokens)
        return reply.usage.ttft_s, reply.usage.completion_tokens

    return ask


def _decoding(engine: LocalEngine, plan: PlacementPlan, max_tokens: int) -> Call:
    params = SamplingParams(max_new_tokens=max_tokens)

    async def decode(i: int) -> tuple[float, int]:
        generation = await engine.generate(plan, params)
        return generation.ttft_s, len(generation.token_ids)

    return decode


async def _calls_level(call: Call, *, concurrency: int, rounds: int) -> dict[str, Any]:
    ttfts: list[float] = []
    latencies: list[float] = []
    tokens = 0

    async def one_caller(i: int) -> None:
        nonlocal tokens
        for _ in range(rounds):
            started = time.perf_counter()
            ttft, n = await call(i)
            latencies.append(time.perf_counter() - started)
            ttfts.append(ttft)
            tokens += n

    started = time.perf_counter()
    await asyncio.gather(*(one_caller(i) for i in range(concurrency)))
    wall = time.perf_counter() - started
    requests = concurrency * rounds
    return {
        "requests": requests,
        "ttft_p50_ms": 1e3 * percentile(ttfts, 50),
        "ttft_p99_ms": 1e3 * percentile(ttfts, 99),
        "call_p50_ms": 1e3 * percentile(latencies, 50),
        "output_tokens_per_request": tokens / requests,
        "output_tokens_per_s": tokens / wall,
    }


async def _measure_in_process(
    model: RefragModel, context: str, *, levels: Sequence[int], rounds: int, max_tokens: int
) -> dict[str, Any]:
    """Concurrent sessions of one agent on one in-process engine, then the same engine
    called directly with the compressed plan (module docstring)."""
    engine = LocalEngine(model, limits=BatchLimits(max_batch=max(levels)))
    chunks = model.chunk(context)
    plan = model.plan(["<|user|>", (chunks, model.encode(chunks), set()), QUESTION_TURN])
    rows = []
    bar = tqdm(total=len(IN_PROCESS_MODES) * len(levels), desc="bench serve, in process")
    try:
        with tempfile.TemporaryDirectory(prefix="refrag-bench-serve-") as folder:
            async with Agent.open(engine=engine, memory=folder) as agent:
                # The first call pays for allocation and kernel choice; its writes fill the cache.
                warm_up = await _sessions(agent, "warm-up", 1, context)
                await _calls_level(_asking(warm_up, 2), concurrency=1, rounds=1)
                for c in levels:
                    ask = _asking(await _sessions(agent, f"c{c}", c, context), max_tokens)
                    figures = await _calls_level(ask, concurrency=c, rounds=rounds)
                    rows.append({"mode": "agent", "concurrency": c, **figures})
                    bar.update()
        for c in levels:
            decode = _decoding(engine, plan, max_tokens)
            figures = await _calls_level(decode, concurrency=c, rounds=rounds)
            rows.append({"mode": "engine", "concurrency": c, **figures})
            bar.update()
    finally:
        bar.close()
        await engine.aclose()
    alone = {r["mode"]: r["output_tokens_per_s"] for r in rows if r["concurrency"] == levels[0]}
    return {
        "rows": rows,
        "speedup": {
            mode: {
                str(r["concurrency"]): r["output_tokens_per_s"] / alone[mode]
                for r in rows
                if r["mode"] == mode
            }
            for mode in IN_PROCESS_MODES
        },
        "max_rows": engine.scheduler.snapshot()["max_rows"],
    }


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
) -> dict[str, Any]:
    """Measure, print a table, write JSON; returns the payload."""
    context_tokens = context_tokens or (2048 if quick else 16_384)
    max_tokens = max_tokens or (16 if quick else 32)
    rounds = rounds or (2 if quick else 1)
    decoder = decoder if decoder is not None else (quick_decoder() if quick else bench_decoder())
    model = RefragModel.create(
        tokenizer=TiktokenTokenizer.byte_level(),
        decoder=decoder,
        encoder=encoder or ChunkEncoder.load(),
    )
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
        _measure_in_process(
            model, context_text(context_tokens), levels=levels, rounds=rounds, max_tokens=max_tokens
        )
    )
    shape = DecoderShape.of(decoder)
    tps = {(r["mode"], r["concurrency"]): r["output_tokens_per_s"] for r in rows}
    payload = {
        **run_header("serve"),
        "quick": quick,
        "model": {
            "decoder": "random Llama",
            "parameters": sum(p.numel() for p in decoder.parameters()),
            "hidden_size": shape.hidden_size,
            "layers": shape.n_layers,
            "vocab_size": shape.vocab_size,
            "dtype": str(next(decoder.parameters()).dtype),
            "k": model.k,
            "encoder": model.encoder.config.path,
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


def format_in_process(payload: dict[str, Any]) -> str:
    """The in-process table: one agent's sessions, then bare engine calls, on one engine."""
    part = payload["in_process"]
    head = (
        f"{'concurrency':>11} {'mode':>6} {'requests':>8} {'TTFT p50 ms':>12} "
        f"{'TTFT p99 ms':>12} {'call p50 ms':>12} {'tok/call':>8} {'out tok/s':>10} "
        f"{'speedup':>8}"
    )
    lines = [
        "in process: one Agent's sessions at once on one LocalEngine (compressed context)",
        head,
        "-" * len(head),
    ]
    for r in part["rows"]:
        speedup = part["speedup"][r["mode"]][str(r["concurrency"])]
        lines.append(
            f"{r['concurrency']:>11} {r['mode']:>6} {r['requests']:>8} "
            f"{r['ttft_p50_ms']:>12.1f} {r['ttft_p99_ms']:>12.1f} {r['call_p50_ms']:>12.1f} "
            f"{r['output_tokens_per_request']:>8.1f} {r['output_tokens_per_s']:>10.1f} "
            f"{speedup:>7.2f}x"
        )
    lines.append(
        "(agent: Session.respond, planning and storing included; engine: LocalEngine.generate "
        "on the plan; speedup: output tokens/s over one call at a time; TTFT measured by the "
        f"engine; at most {part['max_rows']} rows decoded together)"
    )
    return "\n".join(lines)
