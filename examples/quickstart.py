"""Quickstart: write a conversation to memory, answer from compressed context.

python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
import tempfile

from refrag_agent import Agent, Budget


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with Agent.open(model=None, memory=folder) as agent:  # None = bundled default
            chat = agent.session(tenant="acme", session="alice-1")
            await chat.add_system("You are a support agent.")
            await chat.add_turn("user", "My locker code is 4821.")
            await chat.add_turn("assistant", "Got it, locker 4821.")
            await chat.add_document(
                "Lockers are emptied every Friday at 18:00. " * 10, source="facilities.md"
            )

            reply = await chat.respond("What is my locker code?", budget=Budget(p=0.25))
            plan = reply.plan
            print(f"answer: {reply.text!r}")
            print(
                f"{plan.tokens_held} tokens held, {plan.positions_fed} positions fed "
                f"({plan.effective_compression:.1f}x), {plan.chunks_expanded} chunks expanded, "
                f"TTFT {1e3 * reply.usage.ttft_s:.0f} ms"
            )
            for use in plan.segments:
                print(
                    f"  {use.kind.value:<10} at position {use.position:>4}: {use.n_chunks} chunks"
                )


if __name__ == "__main__":
    asyncio.run(main())
