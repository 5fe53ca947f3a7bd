"""``refrag-agent bench serve --in-process``: concurrent sessions of one agent on one
in-process engine, against one call at a time.

One :class:`~refrag_agent.agent.Agent` on a :class:`~refrag_agent.engines.LocalEngine`,
with a memory folder. At each concurrency ``c``, ``c`` new sessions hold the same context
as a document (compressed: the default budget expands nothing beyond the pinned turns) and
ask the question ``rounds`` times each, back to back, with ``respond`` (mode ``agent``): a
call plans (store reads, the query's encoding, the policy), decodes, and stores its query
and answer. Then ``c`` callers call the engine's ``generate`` directly with the plan the
agent's first call decoded (mode ``engine``): the decoding alone. Last, ``c`` sessions of
a second agent whose engine answers at once with a new text of ``max_tokens`` tokens
(mode ``no-decoder``): the agent's own work alone, which no decoding batch shares.

TTFT is the engine's (queue wait, prefill, first token; planning left out); a call's
latency is the whole ``respond`` (or ``generate``). The speedup at ``c`` is output tokens/s
at ``c`` over output tokens/s one call at a time (the first level): what sharing prefill and
decoding batches gives. Every level runs ``repeats`` times, the levels interleaved within a
repeat (agent then engine at each ``c``), so a change in the machine's load touches every
level alike; a speedup is taken within one repeat and reported as the median and range over
repeats; latencies are pooled over repeats. The decoder is a random Llama unless ``model``
names a checkpoint (``"bundled"``: the embedded default); with random weights answers
rarely meet a stop string, so they run to ``max_tokens``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from refrag_agent.agent import Agent, Session
from refrag_agent.bench.common import percentile, run_header, write_json
from refrag_agent.bench.latency import VOCAB, bench_decoder
from refrag_agent.engines import BatchLimits, LocalEngine, default_model, resolve_model
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.decoder import DecoderShape
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer

MODES = ("agent", "engine", "no-decoder")
QUESTION = "What does this code do?"
TARGET = 8.0
"""Issue 14: output tokens/s of 16 concurrent sessions at least 8x one at a time."""

# One call of a level's caller ``i``: its TTFT in seconds and its output tokens.
Call = Callable[[int], Awaitable[tuple[float, int]]]


class _Recording:
    """The engine, noting each plan it is given (the engine mode replays the agent's)."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        self.model = engine.model
        self.plans: list[PlacementPlan] = []

    async def generate(self, plan: PlacementPlan, params: SamplingParams) -> Generation:
        self.plans.append(plan)
        return await self.engine.generate(plan, params)

    def stream(
        self, plan: PlacementPlan, params: SamplingParams
    ) -> AsyncIterator[TokenEvent | Generation]:
        self.plans.append(plan)
        return self.engine.stream(plan, params)

    async def aclose(self) -> None:
        """The engine outlives the agent: the benchmark closes it."""


class _NoDecoder:
    """Answers at once with a new text of about ``max_tokens`` tokens: what an agent's
    calls cost without decoding (the query's encoding, planning, storing both turns)."""

    def __init__(self, model: RefragModel, max_tokens: int) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.calls = 0

    def _answer(self) -> Generation:
        self.calls += 1  # a new text each call: its chunks miss the embedding cache
        words = " ".join(f"w{self.calls}x{i}" for i in range(self.max_tokens))
        tokenizer = self.model.tokenizer
        ids = tokenizer.encode(f"Answer {self.calls}: {words}")[: self.max_tokens]
        return Generation(token_ids=ids, text=tokenizer.decode(ids), finish_reason="length")

    async def generate(self, plan: PlacementPlan, params: SamplingParams) -> Generation:
        return self._answer()

    async def stream(
        self, plan: PlacementPlan, params: SamplingParams
    ) -> AsyncIterator[TokenEvent | Generation]:
        answer = self._answer()
        yield TokenEvent(row=0, token_id=-1, text=answer.text, elapsed_s=0.0)
        yield answer

    async def aclose(self) -> None:
        """Nothing to release."""


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
        reply = await chats[i].respond(QUESTION, max_new_tokens=max_tokens)
        return reply.usage.ttft_s, reply.usage.completion_tokens

    return ask


def _decoding(engine: LocalEngine, plan: PlacementPlan, max_tokens: int) -> Call:
    params = SamplingParams(max_new_tokens=max_tokens)

    async def decode(i: int) -> tuple[float, int]:
        generation = await engine.generate(plan, params)
        return generation.ttft_s, len(generation.token_ids)

    return decode


async def _level(
    call: Call, engine: LocalEngine, *, concurrency: int, rounds: int
) -> dict[str, Any]:
    """``concurrency`` callers, ``rounds`` calls each, back to back: raw figures."""
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

    before = dict(vars(engine.scheduler.counters))
    started = time.perf_counter()
    await asyncio.gather(*(one_caller(i) for i in range(concurrency)))
    wall = time.perf_counter() - started
    after = vars(engine.scheduler.counters)
    return {
        "ttfts": ttfts,
        "latencies": latencies,
        "tokens": tokens,
        "wall_s": wall,
        "prefills": after["prefills"] - before["prefills"],
        "steps": after["steps"] - before["steps"],
    }


def _summary(mode: str, c: int, runs: list[dict[str, Any]], alone: list[float]) -> dict[str, Any]:
    """One table row from a level's repeats; ``alone``: tokens/s of the first level, per
    repeat, for the paired speedups."""
    ttfts = [t for r in runs for t in r["ttfts"]]
    latencies = [t for r in runs for t in r["latencies"]]
    requests = len(latencies)
    tokens = sum(r["tokens"] for r in runs)
    rates = [r["tokens"] / r["wall_s"] for r in runs]
    speedups = [rate / base for rate, base in zip(rates, alone, strict=True)]
    steps = sum(r["steps"] for r in runs)
    return {
        "mode": mode,
        "concurrency": c,
        "requests": requests,
        "repeats": len(runs),
        "ttft_p50_ms": 1e3 * percentile(ttfts, 50),
        "ttft_p99_ms": 1e3 * percentile(ttfts, 99),
        "call_p50_ms": 1e3 * percentile(latencies, 50),
        "call_p90_ms": 1e3 * percentile(latencies, 90),
        "call_p99_ms": 1e3 * percentile(latencies, 99),
        "output_tokens_per_request": tokens / requests,
        "output_tokens_per_s": statistics.median(rates),
        "speedup": statistics.median(speedups),
        "speedup_min": min(speedups),
        "speedup_max": max(speedups),
        "prefills_per_repeat": sum(r["prefills"] for r in runs) / len(runs),
        # Each call's first token comes from its prefill; every other one from a step.
        "rows_per_step": (tokens - requests) / steps if steps else 0.0,
    }


async def measure_in_process(
    model: RefragModel,
    context: str,
    *,
    levels: Sequence[int],
    rounds: int,
    max_tokens: int,
    repeats: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Every mode at every level, ``repeats`` times (module docstring)."""
    engine = LocalEngine(model, limits=BatchLimits(max_batch=max(levels)))
    recording = _Recording(engine)
    raw: dict[tuple[str, int], list[dict[str, Any]]] = {}
    bar = tqdm(
        total=repeats * len(MODES) * len(levels),
        desc="bench serve, in process",
        unit="level",
        disable=not progress,
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="refrag-bench-"))
            agent = await stack.enter_async_context(
                Agent.open(engine=recording, memory=Path(folder) / "decoding")
            )
            idle = _NoDecoder(model, max_tokens)
            bare = await stack.enter_async_context(
                Agent.open(engine=idle, memory=Path(folder) / "no-decoder")
            )
            # The first calls pay for allocation and kernel choice, at one row and at the
            # widest batch; their writes fill the stores' embedding caches.
            for warm_agent in (agent, bare):
                warm_up = await _sessions(warm_agent, "warm-up", 1, context)
                await _level(_asking(warm_up, max_tokens), engine, concurrency=1, rounds=1)
            plan = recording.plans[0]  # what a session's first call decodes
            wide = _decoding(engine, plan, 2)
            await _level(wide, engine, concurrency=max(levels), rounds=1)
            for repeat in range(repeats):
                for c in levels:
                    calls: dict[str, Call] = {
                        "agent": _asking(
                            await _sessions(agent, f"r{repeat}c{c}", c, context), max_tokens
                        ),
                        "engine": _decoding(engine, plan, max_tokens),
                        "no-decoder": _asking(
                            await _sessions(bare, f"r{repeat}c{c}", c, context), max_tokens
                        ),
                    }
                    for mode in MODES:
                        figures = await _level(calls[mode], engine, concurrency=c, rounds=rounds)
                        raw.setdefault((mode, c), []).append(figures)
                        bar.update()
    finally:
        bar.close()
        await engine.aclose()
    rows = []
    for mode in MODES:
        alone = [r["tokens"] / r["wall_s"] for r in raw[(mode, levels[0])]]
        rows += [_summary(mode, c, raw[(mode, c)], alone) for c in levels]
    return {
        "rows": rows,
        "speedup": {
            mode: {str(r["concurrency"]): r["speedup"] for r in rows if r["mode"] == mode}
            for mode in MODES
        },
        "max_rows": engine.scheduler.snapshot()["max_rows"],
        "prompt_positions": plan.n_positions,
        "repeats": repeats,
    }


def context_text(n_tokens: int) -> str:
    """``n_tokens`` bytes of ASCII source text (one byte-level token each)."""
    source = Path(argparse.__file__).read_text(encoding="utf-8")
    text = source.encode("ascii", errors="ignore").decode("ascii")
    return (text * (n_tokens // len(text) + 1))[:n_tokens]


def quick_decoder() -> Any:
    """Random Llama for ``--quick``: 4 layers of width 256, 32K vocabulary (11.6M)."""
    return random_decoder(
        "llama",
        vocab_size=VOCAB,
        hidden_size=256,
        n_layers=4,
        n_heads=4,
        intermediate_size=768,
        max_positions=8192,
    )


def random_model(decoder: Any, encoder: ChunkEncoder | None = None) -> RefragModel:
    """A random-weight decoder behind the byte-level tokenizer and the default encoder."""
    return RefragModel.create(
        tokenizer=TiktokenTokenizer.byte_level(),
        decoder=decoder,
        encoder=encoder or ChunkEncoder.load(),
    )


def describe_model(model: RefragModel, name: str) -> dict[str, Any]:
    decoder = model.decoder
    shape = DecoderShape.of(decoder)
    return {
        "decoder": name,
        "parameters": sum(p.numel() for p in decoder.parameters()),
        "hidden_size": shape.hidden_size,
        "layers": shape.n_layers,
        "vocab_size": shape.vocab_size,
        "dtype": str(next(decoder.parameters()).dtype),
        "k": model.k,
        "encoder": model.encoder.config.path,
    }


def load_model(model: str | Path | None, *, quick: bool) -> tuple[RefragModel, str]:
    """``None``: a random Llama (``--quick``'s 11.6M or the latency benchmark's ~50M);
    ``"bundled"``: the embedded default; else a checkpoint directory. Also its name."""
    if model is None:
        return random_model(quick_decoder() if quick else bench_decoder()), "random Llama"
    if str(model) == "bundled":
        return default_model(), "embedded default (bundled/smol)"
    return resolve_model(model), str(model)


def run_in_process_bench(
    *,
    quick: bool = False,
    json_path: Path | None = None,
    model: str | Path | None = None,
    context_tokens: int | None = None,
    max_tokens: int | None = None,
    rounds: int | None = None,
    repeats: int | None = None,
    levels: Sequence[int] = (1, 4, 16),
) -> dict[str, Any]:
    """Measure, print the table, write JSON; returns the payload."""
    context_tokens = context_tokens or (2048 if quick else 16_384)
    max_tokens = max_tokens or (16 if quick else 32)
    rounds = rounds or 2
    repeats = repeats or (3 if quick else 5)
    loaded, name = load_model(model, quick=quick)
    load_before = os.getloadavg()
    part = asyncio.run(
        measure_in_process(
            loaded,
            context_text(context_tokens),
            levels=levels,
            rounds=rounds,
            max_tokens=max_tokens,
            repeats=repeats,
        )
    )
    payload = {
        **run_header("serve-in-process"),
        "quick": quick,
        "model": {**describe_model(loaded, name), "output_tokens": max_tokens, "rounds": rounds},
        "context_tokens": context_tokens,
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        # OpenMP threads that spin while idle take the cores the other threads need.
        "environment": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")},
        "in_process": part,
    }
    print(format_in_process(payload))
    write_json(json_path, payload)
    return payload


def format_in_process(payload: dict[str, Any]) -> str:
    """The in-process table: one agent's sessions, then bare engine calls, on one engine."""
    part = payload["in_process"]
    head = (
        f"{'concurrency':>11} {'mode':>10} {'requests':>8} {'TTFT p50':>9} {'TTFT p99':>9} "
        f"{'call p50':>9} {'call p99':>9} {'tok/call':>8} {'out tok/s':>9} "
        f"{'speedup (range)':>17} {'prefills':>8} {'rows/step':>9}"
    )
    repeats = part.get("repeats", 1)
    lines = [
        f"in process: one Agent's sessions at once on one LocalEngine, compressed context "
        f"({part.get('prompt_positions', '?')} positions); {repeats} repeat(s) per level",
        head,
        "-" * len(head),
    ]
    for r in part["rows"]:
        speedup = f"{r['speedup']:.2f}x"
        if "speedup_min" in r and repeats > 1:
            speedup += f" ({r['speedup_min']:.1f}-{r['speedup_max']:.1f})"
        lines.append(
            f"{r['concurrency']:>11} {r['mode']:>10} {r['requests']:>8} "
            f"{r['ttft_p50_ms']:>7.1f}ms {r['ttft_p99_ms']:>7.1f}ms "
            f"{r['call_p50_ms']:>7.1f}ms {r.get('call_p99_ms', float('nan')):>7.1f}ms "
            f"{r['output_tokens_per_request']:>8.1f} {r['output_tokens_per_s']:>9.1f} "
            f"{speedup:>17} {r.get('prefills_per_repeat', 0):>8.1f} "
            f"{r.get('rows_per_step', 0):>9.1f}"
        )
    widest = max(int(c) for c in part["speedup"]["agent"])
    agent = part["speedup"]["agent"][str(widest)]
    verdict = "met" if agent >= TARGET else f"missed by {TARGET - agent:.2f}x"
    lines += [
        "(agent: Session.respond, planning and storing included; engine: LocalEngine.generate "
        "on the agent's plan; no-decoder: Session.respond on an engine that answers at once; "
        "speedup: median over repeats of output tokens/s over one call "
        "at a time; TTFT measured by the engine; prefills: decoder prefill calls per repeat; "
        f"rows/step: rows decoded per step; at most {part['max_rows']} rows decoded together)",
        f"agent at {widest} sessions: {agent:.2f}x one at a time "
        f"(target {TARGET:.0f}x: {verdict}); engine alone: "
        f"{part['speedup']['engine'][str(widest)]:.2f}x",
    ]
    load = payload.get("load_average")
    if load:
        lines.append(
            f"load average (1 min) before {load['before'][0]:.2f}, after {load['after'][0]:.2f} "
            f"on {os.cpu_count()} cores; "
            + ", ".join(f"{k}={v}" for k, v in payload.get("environment", {}).items())
        )
    return "\n".join(lines)
