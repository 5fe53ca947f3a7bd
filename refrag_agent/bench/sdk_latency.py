"""``refrag-agent bench latency --sdk``: TTFT through the public SDK on a real model.

A session holds about ``context_tokens`` tokens of conversation (written once, so every
chunk's embedding is cached in the store, as it is on write). Each question is answered
with ``Session.respond``, side by side in one run:

- compressed: the pins as tokens, every other chunk one projected embedding (budget 0);
- full: the same session with every chunk expanded (``Budget(p=1.0)``), the plain-decoder
  baseline on the same weights;
- uncached: compressed plus the encoder's time for the context's chunks, as if none had
  been encoded on write.

TTFT is the reply's ``usage.ttft_s`` (from the decoder call to its first token).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from refrag_agent.agent import Agent
from refrag_agent.bench.common import median, percentile, run_header, write_json
from refrag_agent.budget import Budget
from refrag_agent.engines import resolve_model
from refrag_agent.model.refrag import RefragModel

CONTEXT_TOKENS = 6000
_TOPICS = (
    "The quarterly report covers shipping delays, a new supplier in Porto and the staff rota.",
    "Our build runs the linter first, then the unit tests, then packages the wheel for upload.",
    "The hiking route climbs through pine forest to a ridge with views over two valleys.",
    "Customer feedback praised the faster checkout but asked for clearer delivery estimates.",
    "The recipe needs a slow simmer: onions first, then tomatoes, then the lentils and stock.",
    "The lease renewal asks for a signature by the end of the month and a new meter reading.",
)
QUESTIONS = ("What did the report say about the supplier?", "How does the build start?")


Role = Literal["user", "assistant"]


def conversation(model: RefragModel, n_tokens: int) -> list[tuple[Role, str]]:
    """(role, text) turns totalling about ``n_tokens`` tokens of the model's tokenizer."""
    turns: list[tuple[Role, str]] = []
    total, i = 0, 0
    while total < n_tokens:
        text = " ".join(_TOPICS[(i + j) % len(_TOPICS)] for j in range(4))
        role: Role = "user" if i % 2 == 0 else "assistant"
        turns.append((role, text))
        total += len(model.tokenizer.encode(text))
        i += 1
    return turns


async def sdk_ttft(
    model: RefragModel, *, context_tokens: int = CONTEXT_TOKENS, repeats: int = 3
) -> dict[str, Any]:
    """Median and p90 TTFT, compressed and full, through ``Session.respond``."""
    turns = conversation(model, context_tokens)
    with tempfile.TemporaryDirectory() as folder:
        async with Agent.open(model=model, memory=Path(folder)) as agent:
            chat = agent.session(tenant="bench", session="ttft")
            for role, text in turns:
                await chat.add_turn(role, text)
            timeline = await chat.timeline()
            chunk_texts = [c.text for s in timeline for c in model.chunk(s.text)]
            # Warm-up: the first decoder calls pay for allocation and kernel selection.
            for budget in (Budget(p=0.0), Budget(p=1.0)):
                await chat.respond(QUESTIONS[0], budget=budget, max_new_tokens=1)
            compressed: list[float] = []
            full: list[float] = []
            positions: dict[str, int] = {}
            bar = tqdm(total=2 * repeats, desc="bench latency --sdk", unit="call")
            for r in range(repeats):
                question = QUESTIONS[r % len(QUESTIONS)]
                for name, budget, out in (
                    ("compressed", Budget(p=0.0), compressed),
                    ("full", Budget(p=1.0), full),
                ):
                    reply = await chat.respond(question, budget=budget, max_new_tokens=1)
                    out.append(reply.usage.ttft_s)
                    positions[name] = reply.plan.positions_fed
                    bar.update()
            bar.close()
    encode = []
    for _ in range(max(1, repeats // 2)):
        started = time.perf_counter()
        model.encode(chunk_texts)
        encode.append(time.perf_counter() - started)
    uncached = median(compressed) + median(encode)
    return {
        "context_tokens": sum(len(model.tokenizer.encode(t)) for _, t in turns),
        "chunks": len(chunk_texts),
        "positions_compressed": positions["compressed"],
        "positions_full": positions["full"],
        "compressed_ttft_ms": 1e3 * median(compressed),
        "compressed_ttft_p90_ms": 1e3 * percentile(compressed, 90),
        "full_ttft_ms": 1e3 * median(full),
        "full_ttft_p90_ms": 1e3 * percentile(full, 90),
        "uncached_ttft_ms": 1e3 * uncached,
        "speedup": median(full) / median(compressed),
        "speedup_uncached": median(full) / uncached,
        "repeats": repeats,
    }


async def run_sdk_latency_bench(
    model: RefragModel | str | Path | None = None,
    *,
    context_tokens: int = CONTEXT_TOKENS,
    repeats: int = 3,
    json_path: Path | None = None,
) -> dict[str, Any]:
    """Load the model (default: the embedded one), measure, write JSON; returns the payload."""
    loaded = resolve_model(model)
    row = await sdk_ttft(loaded, context_tokens=context_tokens, repeats=repeats)
    payload = {
        **run_header("latency-sdk"),
        "model": "embedded default" if model is None else str(model),
        "k": loaded.k,
        "row": row,
    }
    write_json(json_path, payload)
    return payload


def format_sdk_row(row: dict[str, Any]) -> str:
    """The measured row as the CLI prints it."""
    return (
        f"{row['context_tokens']} context tokens, {row['chunks']} chunks: "
        f"compressed {row['compressed_ttft_ms']:.0f} ms ({row['positions_compressed']} positions), "
        f"full {row['full_ttft_ms']:.0f} ms ({row['positions_full']} positions): "
        f"{row['speedup']:.1f}x cached, {row['speedup_uncached']:.1f}x uncached "
        f"(uncached {row['uncached_ttft_ms']:.0f} ms)"
    )
