"""``refrag-agent demo``: a scripted conversation answered with compressed context.

The script is written in the bundled model's training formats (facts said in user turns,
tool outputs and documents, a fact updated later, a question never answered), with chat
and a long document around them; the bundled tiny model was trained on such dialogues
(``refrag_agent/bundled/tiny/README.md``). Each row shows the answer against the expected
one, and what compression saved: positions fed versus tokens held, TTFT, KV-cache bytes.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refrag_agent.agent import Agent, Session
from refrag_agent.budget import Budget
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.timeline import SegmentKind

QUESTIONS = (
    ("What is my locker code?", "4821"),
    ("Which room is the meeting in?", "12B"),
    ("What is the wifi password?", "falcon42"),
    ("What is my flight number?", "KL212"),
    ("When is my dentist appointment?", "not mentioned"),
)
CHAT = (
    ("How are you today?", "I'm doing well, thanks for asking."),
    ("Can you remind me to drink water later?", "Sure, I will keep that in mind."),
    ("The weather has been strange this week.", "It has been changing a lot lately."),
    (
        "I read an interesting article about bees.",
        "Bees are fascinating; they communicate by dancing.",
    ),
)
NOISE = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.")


@dataclass(frozen=True)
class DemoSegment:
    kind: SegmentKind
    text: str


@dataclass(frozen=True)
class DemoRow:
    """One answered question: what was held, what was fed, and what it cost."""

    question: str
    expected: str
    tokens_held: int
    positions_fed: int
    chunks_expanded: int
    chunks_compressed: int
    ttft_compressed_ms: float
    ttft_full_ms: float
    kv_compressed: int
    kv_full: int
    answer: str

    @property
    def correct(self) -> bool:
        return self.answer.strip().lower() == self.expected.lower()


def _chat(start: int, n: int) -> list[DemoSegment]:
    out = []
    for i in range(start, start + n):
        user, assistant = CHAT[i % len(CHAT)]
        out += [DemoSegment(SegmentKind.USER, user), DemoSegment(SegmentKind.ASSISTANT, assistant)]
    return out


def script() -> list[DemoSegment]:
    """Chat, five facts (one updated later) and a long document: about 1K decoder tokens."""
    filler = [NOISE[i % len(NOISE)] for i in range(60)]
    notes = " ".join([*filler[:30], "The wifi password is falcon42.", *filler[30:]])
    return [
        DemoSegment(SegmentKind.SYSTEM, "You are a helpful assistant. Answer from memory."),
        *_chat(0, 3),
        DemoSegment(SegmentKind.USER, "My locker code is 4821."),
        *_chat(3, 2),
        DemoSegment(SegmentKind.TOOL_OUTPUT, json.dumps({"note": "The meeting is in room 12B."})),
        DemoSegment(SegmentKind.USER, "My flight number is LH417."),
        DemoSegment(SegmentKind.DOCUMENT, f"Notes. {notes} End of notes."),
        *_chat(1, 2),
        DemoSegment(SegmentKind.USER, "I switched to flight KL212."),
        *_chat(2, 1),
    ]


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
            await chat.add_tool_output("lookup_calendar", seg.text, domain="calendar")
        elif seg.kind is SegmentKind.DOCUMENT:
            await chat.add_document(seg.text, source="notes.md", domain="notes")
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
            rows = [await _ask(agent, chat, q, a, max_new_tokens) for q, a in QUESTIONS]
    print(format_rows(rows))
    return rows


async def _ask(
    agent: Agent, chat: Session, question: str, expected: str, max_new_tokens: int
) -> DemoRow:
    reply = await chat.respond(question, max_new_tokens=max_new_tokens)
    plan = reply.plan
    # The baseline: the same model fed the same segments as plain tokens.
    texts = {s.id: s for s in await chat.timeline()}
    model = agent.model
    template = model.template
    full_text = [template.render(u.kind, texts[u.segment_id].text) for u in plan.segments]
    full_text.append(template.generation_prompt)
    full = model.plan(full_text)
    await asyncio.to_thread(model.generate, [full], SamplingParams(max_new_tokens=1))  # warm-up
    baseline = await asyncio.to_thread(model.generate, [full], SamplingParams(max_new_tokens=1))
    return DemoRow(
        question=question,
        expected=expected,
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
        f"{'question':<33} {'answer':<14} {'expected':<14} {'held':>5} {'fed':>4} "
        f"{'expanded':>8} {'TTFT refrag':>11} {'TTFT full':>10} {'KV refrag':>10} {'KV full':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        answer = (r.answer.strip() or "(empty)")[:12] + (" ✓" if r.correct else " ✗")
        lines.append(
            f"{r.question:<33} {answer:<14} {r.expected:<14} {r.tokens_held:>5} "
            f"{r.positions_fed:>4} {r.chunks_expanded:>8} {r.ttft_compressed_ms:>9.1f}ms "
            f"{r.ttft_full_ms:>8.1f}ms {r.kv_compressed / 1024:>6.0f} KiB "
            f"{r.kv_full / 1024:>5.0f} KiB"
        )
    lines.append(
        f"{sum(r.correct for r in rows)}/{len(rows)} answered as expected. KV-cache bytes at "
        "fp16; held = tokens in memory, fed = decoder positions."
    )
    return "\n".join(lines)
