"""A tool-calling loop: typed tools, their calls and outputs stored as paired segments.

    python examples/tool_loop.py

The model decides whether to call a tool. To show every step deterministically, this
example first drives a session with a scripted engine (the test double that ships in
``refrag_agent.engines``), then asks the embedded default model in a new session: it
calls ``lookup_order`` for order 12 and answers from the tool's output ("Thursday").
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from refrag_agent import Agent, tool
from refrag_agent.engines import ScriptedEngine, default_model
from refrag_agent.tools import ToolCallEvent, ToolOutputEvent


@tool
def lookup_order(order_id: int) -> dict[str, Any]:
    """Look an order up by its number."""
    return {"order": order_id, "status": "shipped", "eta": "Thursday"}


async def main() -> None:
    model = default_model()
    print("tool schema:", lookup_order.schema()["function"]["name"])
    with tempfile.TemporaryDirectory() as folder:
        scripted = ScriptedEngine(
            model,
            [ScriptedEngine.call("lookup_order", order_id=7731), "It arrives Thursday."],
        )
        async with Agent.open(engine=scripted, memory=folder) as agent:
            chat = agent.session(tenant="shop", session="bob")
            async for event in chat.stream("Where is order 7731?", tools=[lookup_order]):
                if isinstance(event, ToolCallEvent):
                    print("call  :", event.call.text)
                elif isinstance(event, ToolOutputEvent):
                    print("output:", event.output.text)
            for segment in await chat.timeline():
                pair = segment.metadata.get("tool_call_id", "")
                print(
                    f"  {segment.seq} {segment.kind.value:<11} {pair[:8]:<8} {segment.text[:50]!r}"
                )
            print(f"the second decoder call read {scripted.plans[-1].n_positions} positions")

        async with Agent.open(model, memory=folder) as agent:
            chat = agent.session(tenant="shop", session="alice")
            question = "When does order 12 arrive?"
            reply = await chat.respond(question, tools=[lookup_order], max_new_tokens=32)
            print("real model, asked :", question)
            for exchange in reply.tool_exchanges:
                print("real model, call  :", exchange.call.text)
                print("real model, output:", exchange.output.text)
            print(f"real model, answer: {reply.text!r} (finish={reply.finish_reason})")


if __name__ == "__main__":
    asyncio.run(main())
