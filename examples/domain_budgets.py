"""Per-domain budgets: expand legal text generously, chit-chat never.

python examples/domain_budgets.py
"""

from __future__ import annotations

import asyncio
import tempfile

from refrag_agent import Agent, Budget

CONTRACT = (
    "Clause 7.2: the supplier shall refund 120% of the fee if delivery is more than ten "
    "business days late. Clause 7.3: refunds are paid within 30 days. "
) * 4


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with Agent.open(model=None, memory=folder) as agent:
            chat = agent.session(tenant="lawfirm", session="case-17")
            for i in range(6):
                await chat.add_turn(
                    "user", f"Thanks for the update number {i}, have a nice day!", domain="chitchat"
                )
            await chat.add_document(CONTRACT, source="contract.pdf", domain="legal")

            budget = Budget(tokens=160, per_domain={"legal": 1.0, "chitchat": 0})
            reply = await chat.respond("What refund applies to a late delivery?", budget=budget)
            print("expanded tokens per domain:", reply.plan.spend_per_domain)
            assert reply.plan.spend_per_domain.get("chitchat", 0) == 0
            print(
                f"{reply.plan.positions_fed} positions fed for {reply.plan.tokens_held} tokens held"
            )


if __name__ == "__main__":
    asyncio.run(main())
