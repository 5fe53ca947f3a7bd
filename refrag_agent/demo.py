"""``refrag-agent demo``: a long natural conversation answered with compressed context.

The conversation (:mod:`refrag_agent.demo_script`) is longer than the decoder's window:
its first turns sit more than 8,192 tokens back, where a decoder fed the conversation as
tokens could not see them. REFRAG keeps every segment, most of it compressed to one
position per chunk, and expands what the budget allows. Each row shows the answer beside
the expected one, how far back its fact was told, positions fed versus tokens held, and
the time to first token.

The full-token baseline is measured once, on the question told furthest back: the newest
segments that fit the window (after the system prompt) are fed as tokens, as a plain
decoder would be fed them. Its prefill takes tens of seconds on a CPU, so it is timed once
and compared with the compressed call of the same question.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from refrag_agent.agent import Agent, Session
from refrag_agent.budget import Budget
from refrag_agent.context import capacity
from refrag_agent.demo_script import QUESTIONS, Line, Question, script
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.timeline import Segment, SegmentKind


@dataclass(frozen=True)
class DemoRow:
    """One answered question: the answer, where its fact was told, what was fed."""

    question: str
    expected: str
    answer: str
    # Positions a full-token prompt needs to reach back to the answer's segment (its
    # tokens and everything after it, framed, and the question); None: never told.
    told_positions_back: int | None
    fact_in_plan: bool | None  # whether the plan laid out the answer's segment
    tokens_held: int
    positions_fed: int
    chunks_expanded: int
    chunks_compressed: int
    segments_dropped: int
    ttft_s: float

    @property
    def correct(self) -> bool:
        return self.answer.strip().lower() == self.expected.lower()


@dataclass(frozen=True)
class FullTokens:
    """The full-token baseline of one question: the newest segments that fit, as tokens."""

    question: str
    answer: str
    positions: int
    segments_fed: int
    segments_dropped: int
    tokens_dropped: int
    ttft_s: float
    compressed_ttft_s: float  # the same question through REFRAG

    @property
    def speedup(self) -> float:
        return self.ttft_s / self.compressed_ttft_s


@dataclass(frozen=True)
class DemoReport:
    """What the demo wrote, what each question got, and the baseline it was timed against."""

    model: str
    window: int
    budget: Budget
    segments_written: int
    tokens_written: int
    write_s: float
    rows: list[DemoRow]
    full: FullTokens | None
    wall_s: float

    def format(self) -> str:
        """The report as a terminal table."""
        spent = (
            f"p={self.budget.p}" if self.budget.p is not None else f"tokens={self.budget.tokens}"
        )
        lines = [
            f"model {self.model}, window {self.window:,} positions, budget {spent}",
            f"wrote {self.segments_written} segments, {self.tokens_written:,} tokens, "
            f"in {self.write_s:.1f} s",
            "",
        ]
        head = (
            f"{'question':<54} {'answer':<16} {'expected':<14} {'told':>10} "
            f"{'held':>6} {'fed':>5} {'TTFT':>7}"
        )
        lines += [head, "-" * len(head)]
        for r in self.rows:
            answer = (r.answer.strip().replace("\n", " ") or "(empty)")[:13]
            told = "never" if r.told_positions_back is None else f"{r.told_positions_back:,}"
            if r.told_positions_back is not None and r.told_positions_back > self.window:
                told += "*"
            if r.fact_in_plan is False:
                told += "!"
            lines.append(
                f"{r.question:<54} {answer + (' ✓' if r.correct else ' ✗'):<16} "
                f"{r.expected:<14} {told:>10} {r.tokens_held:>6,} {r.positions_fed:>5,} "
                f"{r.ttft_s:>6.1f}s"
            )
        lines += [
            f"{sum(r.correct for r in self.rows)}/{len(self.rows)} answered as expected.",
            "told = positions back to the fact as tokens (* beyond the window); held = tokens "
            "the context stands for; fed = decoder positions; TTFT compressed.",
        ]
        if any(r.fact_in_plan is False for r in self.rows):
            lines.append("! the plan left that fact out of the context.")
        if self.full is not None:
            f = self.full
            lines += [
                "",
                f"full tokens, {f.question!r}: the newest {f.segments_fed} segments fit the "
                f"window ({f.positions:,} positions); the first {f.segments_dropped} "
                f"({f.tokens_dropped:,} tokens) are dropped.",
                f"  answer {f.answer.strip()[:40] or '(empty)'!r}, TTFT {f.ttft_s:.1f} s "
                f"against {f.compressed_ttft_s:.1f} s compressed: {f.speedup:.1f}x.",
            ]
        lines.append(f"demo took {self.wall_s:.0f} s.")
        return "\n".join(lines)


async def write_script(chat: Session, lines: Sequence[Line] | None = None) -> list[Segment]:
    """Write the scripted conversation (or ``lines``) into a session; the segments written."""
    out = []
    for line in script() if lines is None else lines:
        if line.kind is SegmentKind.SYSTEM:
            out.append(await chat.add_system(line.text))
        elif line.kind is SegmentKind.TOOL_OUTPUT:
            out.append(await chat.add_tool_output(line.source or "tool", line.text))
        elif line.kind is SegmentKind.DOCUMENT:
            out.append(await chat.add_document(line.text, source=line.source))
        else:
            out.append(
                await chat.add_turn(
                    "user" if line.kind is SegmentKind.USER else "assistant", line.text
                )
            )
    return out


async def run_demo(
    *,
    model: Any = None,
    memory: Path | None = None,
    budget: Budget | None = None,
    max_new_tokens: int = 24,
    full_tokens: bool = True,
) -> DemoReport:
    """Write the script to a fresh memory and answer the questions; with ``full_tokens``,
    time the full-token baseline once, on the question told furthest back."""
    started = time.perf_counter()
    budget = budget or Budget(p=0.1)
    with tempfile.TemporaryDirectory(prefix="refrag-demo-") as scratch:
        folder = memory or Path(scratch) / "agent-memory"
        async with Agent.open(model=model, memory=folder, budget=budget) as agent:
            chat = agent.session(tenant="demo", session="demo")
            t0 = time.perf_counter()
            written = await write_script(chat)
            write_s = time.perf_counter() - t0
            tokens_written = sum(s.n_tokens for s in written)
            await asyncio.to_thread(_warm_up, agent.model)
            rows = [
                await _ask(agent, chat, written, q, max_new_tokens=max_new_tokens)
                for q in QUESTIONS
            ]
            full = None
            if full_tokens:
                furthest = max(
                    (r for r in rows if r.told_positions_back is not None),
                    key=lambda r: r.told_positions_back or 0,
                )
                full = await _full_tokens(agent, chat, furthest, max_new_tokens=max_new_tokens)
            model_name = agent.model.config.base or str(model or "bundled")
            window = agent.model.shape.max_positions
    return DemoReport(
        model=model_name,
        window=window,
        budget=budget,
        segments_written=len(written),
        tokens_written=tokens_written,
        write_s=write_s,
        rows=rows,
        full=full,
        wall_s=time.perf_counter() - started,
    )


def _warm_up(model: RefragModel) -> None:
    """One tiny decoder call, so the first timed question pays no one-off start-up cost."""
    model.generate(
        [model.plan([model.template.question("Hello")])], SamplingParams(max_new_tokens=1)
    )


def _told(written: Sequence[Segment], question: Question) -> Segment | None:
    """The latest written segment that holds the expected answer (None: never told)."""
    holding = [s for s in written if question.expected in s.text]
    return holding[-1] if holding else None


async def _ask(
    agent: Agent,
    chat: Session,
    written: Sequence[Segment],
    question: Question,
    *,
    max_new_tokens: int,
) -> DemoRow:
    told = _told(written, question)
    timeline = await chat.timeline()
    reply = await chat.respond(question.text, max_new_tokens=max_new_tokens)
    plan = reply.plan
    back = None
    if told is not None:
        prompt = [_positions(agent.model, s) for s in timeline if s.seq >= told.seq]
        back = sum(prompt) + _cost(agent.model, agent.model.template.question(question.text))
    return DemoRow(
        question=question.text,
        expected=question.expected,
        answer=reply.text,
        told_positions_back=back,
        fact_in_plan=None if told is None else any(u.segment_id == told.id for u in plan.segments),
        tokens_held=plan.tokens_held,
        positions_fed=plan.positions_fed,
        chunks_expanded=plan.chunks_expanded,
        chunks_compressed=plan.chunks_compressed,
        segments_dropped=plan.segments_left_in_store,
        ttft_s=reply.usage.ttft_s,
    )


def _cost(model: RefragModel, text: str) -> int:
    """Decoder positions ``text`` takes as tokens."""
    return len(model.tokenizer.encode(text, allow_special=True))


def _positions(model: RefragModel, segment: Segment) -> int:
    """Decoder positions a segment takes as tokens, framed by the template."""
    return _cost(model, model.template.render(segment.kind, segment.text))


async def _full_tokens(
    agent: Agent, chat: Session, row: DemoRow, *, max_new_tokens: int
) -> FullTokens:
    """Ask ``row``'s question again with the newest segments that fit fed as tokens."""
    model = agent.model
    template = model.template
    # The memory as it was when the question was asked: the turns of later questions out.
    timeline = await chat.timeline()
    asked = next(i for i, s in enumerate(timeline) if s.text == row.question)
    segments = timeline[:asked]

    room = capacity(model.shape.max_positions, max_new_tokens)
    room -= _cost(model, template.question(row.question))
    system = [s for s in segments if s.kind is SegmentKind.SYSTEM]
    room -= sum(_positions(model, s) for s in system)
    kept: list[Segment] = []
    for s in reversed([s for s in segments if s.kind is not SegmentKind.SYSTEM]):
        room -= _positions(model, s)
        if room < 0:
            break
        kept.insert(0, s)
    fed = {s.id for s in [*system, *kept]}
    dropped = [s for s in segments if s.id not in fed]
    texts = [template.render(s.kind, s.text) for s in [*system, *kept]]
    plan = model.plan([*texts, template.question(row.question)])
    params = replace(
        agent.sampling,
        max_new_tokens=max_new_tokens,
        stop=template.stops(tool_calls=False),
    )
    generation = (await asyncio.to_thread(model.generate, [plan], params))[0]
    return FullTokens(
        question=row.question,
        answer=generation.text,
        positions=plan.n_positions,
        segments_fed=len(system) + len(kept),
        segments_dropped=len(dropped),
        tokens_dropped=sum(s.n_tokens for s in dropped),
        ttft_s=generation.ttft_s,
        compressed_ttft_s=row.ttft_s,
    )
