"""``refrag-agent chat``, ``inspect`` and ``prepare``: a person at a terminal."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from refrag_agent.agent import Agent
from refrag_agent.budget import Budget
from refrag_agent.errors import ScopeError
from refrag_agent.memory import MemoryStore
from refrag_agent.model.base_decoder import base_decoder_dir
from refrag_agent.plan import PlanLog
from refrag_agent.reply import ReplyDone, TextDelta
from refrag_agent.timeline import Scope


async def run_chat(*, model: Any, memory: Path, tenant: str, session: str, budget: Budget) -> None:
    """Read lines from stdin, answer each from memory; an empty line or EOF ends."""
    async with Agent.open(model=model, memory=memory, budget=budget) as agent:
        chat = agent.session(tenant=tenant, session=session)
        print(f"memory: {memory} (tenant {tenant!r}, session {session!r}); empty line quits")
        while True:
            line = await asyncio.to_thread(_prompt)
            if not line:
                break
            async for event in chat.stream(line):
                if isinstance(event, TextDelta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, ReplyDone):
                    plan = event.reply.plan
                    print(
                        f"\n  [{plan.positions_fed} positions fed for {plan.tokens_held} tokens "
                        f"held, {plan.chunks_expanded} chunks expanded, "
                        f"TTFT {1e3 * plan.ttft_s:.0f} ms]"
                    )


def _prompt() -> str:
    try:
        return input("> ").strip()
    except EOFError:
        return ""


async def run_inspect(*, memory: Path, tenant: str, session: str, last: int) -> None:
    """Print the session's timeline and its most recent plans; reads only, no encoder."""
    scope = Scope(tenant=tenant, session=session)
    async with MemoryStore.open_read_only(memory) as store:
        if not await store.has_scope(scope):
            raise ScopeError("no such session in this memory", tenant=tenant, session=session)
        segments = await store.timeline(scope)
    print(f"{len(segments)} segments in {tenant}/{session}")
    print(f"{'seq':>4} {'kind':<12} {'domain':<12} {'tokens':>6} {'chunks':>6}  text")
    for s in segments:
        text = s.text.replace("\n", " ")
        print(
            f"{s.seq:>4} {s.kind.value:<12} {s.domain[:12]:<12} {s.n_tokens:>6} "
            f"{s.n_chunks:>6}  {text[:60]}{'…' if len(text) > 60 else ''}"
        )
    plans = PlanLog(memory / "plans.jsonl").read(scope, last=last)
    print(f"\n{len(plans)} recent plans")
    for p in plans:
        spend = ", ".join(f"{d}={n}" for d, n in sorted(p.spend_per_domain.items())) or "-"
        print(
            f"  {p.created_at:%Y-%m-%d %H:%M:%S}  {p.query[:40]!r}: {p.positions_fed} fed / "
            f"{p.tokens_held} held ({p.effective_compression:.1f}x), "
            f"{p.chunks_expanded} expanded [{spend}], policy {p.policy}, "
            f"TTFT {1e3 * p.ttft_s:.0f} ms"
        )
    sys.stdout.flush()


def progress_bar(
    stream: TextIO | None = None, *, width: int = 30
) -> Callable[[str, int, int], None]:
    """A ``progress(stage, done, total)`` callback that redraws one bar line on stderr."""
    out = stream or sys.stderr

    def draw(stage: str, done: int, total: int) -> None:
        filled = width * done // max(total, 1)
        bar = "#" * filled + "-" * (width - filled)
        end = "\n" if done >= total else ""
        out.write(f"\r[{bar}] {done}/{total} {stage:<30}{end}")
        out.flush()

    return draw


def prepare_base() -> None:
    """Convert the embedded default's base decoder if it is not yet, drawing a bar."""
    base_decoder_dir(progress=progress_bar())


def run_prepare() -> None:
    """Convert the base decoder into the local cache (once) and print where it is."""
    print(f"base decoder: {base_decoder_dir(progress=progress_bar())}")
