"""``refrag-agent demo``: a long scripted conversation answered with compressed context.

Until the trained bundled model ships, the demo builds a tiny random-weight decoder on the
spot and says so: its answers are noise, but every figure it prints (positions fed,
tokens held, TTFT, KV-cache bytes) is measured on the real code path.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refrag_agent.budget import Budget
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.timeline import SegmentKind

if TYPE_CHECKING:
    from refrag_agent.agent import Agent, Session

QUESTIONS = (
    "What is my locker code?",
    "When does order 7731 arrive?",
    "How many days of leave can be carried over?",
)


@dataclass(frozen=True)
class DemoSegment:
    kind: SegmentKind
    text: str


@dataclass(frozen=True)
class DemoRow:
    """One answered question: what was held, what was fed, and what it cost."""

    question: str
    tokens_held: int
    positions_fed: int
    chunks_expanded: int
    chunks_compressed: int
    ttft_compressed_ms: float
    ttft_full_ms: float
    kv_compressed: int
    kv_full: int
    answer: str


def script() -> list[DemoSegment]:
    """Turns, tool outputs and a document: about 6K decoder tokens in all."""
    import textwrap

    segs = [DemoSegment(SegmentKind.SYSTEM, "You are a support agent. Answer from memory.")]
    for day in range(12):
        segs.append(
            DemoSegment(
                SegmentKind.USER, f"Day {day}: the printer on floor {day % 4} jammed again."
            )
        )
        segs.append(
            DemoSegment(
                SegmentKind.ASSISTANT,
                f"Logged ticket T-{400 + day} for the floor {day % 4} printer.",
            )
        )
    segs.append(DemoSegment(SegmentKind.USER, "My locker code is 4821, please remember it."))
    order = {"order": 7731, "status": "shipped", "eta": "Thursday", "items": ["desk lamp", "cable"]}
    segs.append(DemoSegment(SegmentKind.TOOL_OUTPUT, json.dumps(order)))
    handbook = textwrap.dedent(
        """
        Leave policy. Employees accrue two days of leave per month. Up to five days of
        unused leave can be carried over into the next year; the rest lapses on 31 March.
        Requests go to the team lead at least two weeks ahead.
        """
    ).strip()
    filler = " ".join(
        f"Section {i}: facilities, badges, parking and meeting-room etiquette." for i in range(60)
    )
    segs.append(DemoSegment(SegmentKind.DOCUMENT, f"{filler} {handbook}"))
    return segs


def build_model(encoder: ChunkEncoder | None = None) -> RefragModel:
    """A seeded random-weight Llama (4 layers, width 256), byte-level tokenizer, MiniLM."""
    tokenizer = TiktokenTokenizer.byte_level()
    decoder = random_decoder(
        "llama",
        vocab_size=tokenizer.vocab_size,
        hidden_size=256,
        n_layers=4,
        n_heads=4,
        max_positions=16_384,
    )
    return RefragModel.create(tokenizer=tokenizer, decoder=decoder, encoder=encoder)


async def write_script(chat: Session) -> None:
    """Write the scripted conversation into a session."""
    for seg in script():
        if seg.kind is SegmentKind.SYSTEM:
            await chat.add_system(seg.text)
        elif seg.kind is SegmentKind.TOOL_OUTPUT:
            await chat.add_tool_output("lookup_order", seg.text, domain="orders")
        elif seg.kind is SegmentKind.DOCUMENT:
            await chat.add_document(seg.text, source="handbook.md", domain="policy")
        else:
            await chat.add_turn("user" if seg.kind is SegmentKind.USER else "assistant", seg.text)


async def run_demo(
    *,
    model: Any = None,
    memory: Path | None = None,
    budget: Budget | None = None,
    max_new_tokens: int = 24,
) -> list[DemoRow]:
    """Write the script to a fresh memory, answer the questions; print one row each."""
    if model is None:
        print(
            "note: no trained bundled model ships yet, so this demo runs a tiny random-weight "
            "decoder built now.\n"
            "      Its answers are noise; the figures are measured on the real code path."
        )
    from refrag_agent.agent import Agent

    budget = budget or Budget(p=0.1)
    with tempfile.TemporaryDirectory(prefix="refrag-demo-") as scratch:
        folder = memory or Path(scratch) / "agent-memory"
        async with Agent.open(model=model, memory=folder, budget=budget) as agent:
            chat = agent.session(tenant="demo", session="demo")
            started = time.perf_counter()
            await write_script(chat)
            segments = await chat.timeline()
            print(
                f"wrote {len(segments)} segments ({sum(s.n_chunks for s in segments)} chunks "
                f"of k={agent.model.k} tokens) to {folder} in {time.perf_counter() - started:.1f}s"
            )
            rows = [await _ask(agent, chat, q, max_new_tokens) for q in QUESTIONS]
    print(format_rows(rows))
    return rows


async def _ask(agent: Agent, chat: Session, question: str, max_new_tokens: int) -> DemoRow:
    reply = await chat.respond(question, max_new_tokens=max_new_tokens)
    plan = reply.plan
    # The baseline: the same model fed the same segments as plain tokens.
    texts = {s.id: s for s in await chat.timeline()}
    full_text = [f"<|{u.kind.value}|>{texts[u.segment_id].text}<|end|>" for u in plan.segments] + [
        "<|assistant|>"
    ]
    model = agent.model
    full = model.plan(full_text)
    await asyncio.to_thread(model.generate, [full], SamplingParams(max_new_tokens=1))  # warm-up
    baseline = await asyncio.to_thread(model.generate, [full], SamplingParams(max_new_tokens=1))
    return DemoRow(
        question=question,
        tokens_held=full.n_positions,
        positions_fed=plan.positions_fed,
        chunks_expanded=plan.chunks_expanded,
        chunks_compressed=plan.chunks_compressed,
        ttft_compressed_ms=1e3 * reply.usage.ttft_s,
        ttft_full_ms=1e3 * baseline[0].ttft_s,
        kv_compressed=model.shape.kv_bytes(plan.positions_fed),
        kv_full=model.shape.kv_bytes(full.n_positions),
        answer=reply.text,
    )


def format_rows(rows: Sequence[DemoRow]) -> str:
    head = (
        f"{'question':<44} {'held':>6} {'fed':>5} {'expanded':>8} "
        f"{'TTFT refrag':>11} {'TTFT full':>10} {'KV refrag':>10} {'KV full':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.question:<44} {r.tokens_held:>6} {r.positions_fed:>5} {r.chunks_expanded:>8} "
            f"{r.ttft_compressed_ms:>9.1f}ms {r.ttft_full_ms:>8.1f}ms "
            f"{r.kv_compressed / 1024:>6.0f} KiB {r.kv_full / 1024:>6.0f} KiB"
        )
    lines.append("(KV-cache bytes at fp16; held = tokens in memory, fed = decoder positions)")
    return "\n".join(lines)
