"""A tool-calling loop: typed tools, their calls and outputs stored as paired segments.

    python examples/tool_loop.py

The bundled model decides whether to call a tool. To show every step deterministically,
this example first drives the same session with a scripted decoder (the test double that
ships in ``refrag_agent.tools``), then asks the real model once.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from refrag_agent import Agent, tool
from refrag_agent.model.generation import Generation
from refrag_agent.tools import ScriptedDecoder, ToolCallEvent, ToolOutputEvent


@tool
def lookup_order(order_id: int) -> dict[str, Any]:
    """Look an order up by its number."""
    return {"order": order_id, "status": "shipped", "eta": "Thursday"}


async def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with Agent.open(model=None, memory=folder) as agent:
            chat = agent.session(tenant="shop", session="bob")
            print("tool schema:", lookup_order.schema()["function"]["name"])

            scripted = ScriptedDecoder(
                [ScriptedDecoder.call("lookup_order", order_id=7731), "It arrives Thursday."]
            )
            real_generate = agent._engine.generate

            async def scripted_generate(plan: Any, params: Any) -> Generation:
                text = await scripted()
                return Generation(token_ids=[0] * len(text), text=text, finish_reason="stop")

            agent._engine.generate = scripted_generate  # type: ignore[method-assign]
            async for event in chat.stream("Where is order 7731?", tools=[lookup_order]):
                if isinstance(event, ToolCallEvent):
                    print("call  :", event.call.text)
                elif isinstance(event, ToolOutputEvent):
                    print("output:", event.output.text)
            agent._engine.generate = real_generate  # type: ignore[method-assign]

            for segment in await chat.timeline():
                pair = segment.metadata.get("tool_call_id", "")
                print(
                    f"  {segment.seq} {segment.kind.value:<11} {pair[:8]:<8} {segment.text[:50]!r}"
                )

            reply = await chat.respond("And order 12?", tools=[lookup_order], max_new_tokens=16)
            print(f"real model: finish={reply.finish_reason}, calls={len(reply.tool_exchanges)}")


if __name__ == "__main__":
    asyncio.run(main())
