"""Long memory across sessions of one tenant (and never across tenants).

python examples/cross_session_memory.py
"""

from __future__ import annotations

import asyncio
import tempfile

from refrag_agent import Agent


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with Agent.open(model=None, memory=folder) as agent:
            monday = agent.session(tenant="acme", session="monday")
            await monday.add_turn("user", "Our staging database password is tulip-42.")
            await agent.session(tenant="globex", session="monday").add_turn(
                "user", "Our staging database password is orchid-77."
            )

        # A new process, a new session: memory persists in the folder.
        async with Agent.open(model=None, memory=folder) as agent:
            friday = agent.session(tenant="acme", session="friday", recall="tenant")
            reply = await friday.respond("What is the staging database password?")
            recalled = [u for u in reply.plan.segments if u.retrieved]
            print(f"recalled {len(recalled)} segment(s) from acme's other sessions")
            texts = [
                s.text for s in await agent.session(tenant="acme", session="monday").timeline()
            ]
            print("acme/monday holds:", texts)


if __name__ == "__main__":
    asyncio.run(main())
