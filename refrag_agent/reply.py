"""A reply and what it cost, the events of a streamed reply, and the record of each call.

:func:`finish_reply` turns a decoded generation and its :class:`ContextPlan` into the
:class:`Reply` a session returns, logs the plan (event ``refrag.plan``) and keeps it in
the agent's plan log.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TypeAlias, Union

from pydantic import BaseModel, ConfigDict

from refrag_agent.logs import get_logger
from refrag_agent.model.generation import Generation
from refrag_agent.plan import ContextPlan, PlanLog
from refrag_agent.tools import ToolCallEvent, ToolExchange, ToolOutputEvent

log = get_logger(__name__)


class Usage(BaseModel):
    """What one reply cost."""

    model_config = ConfigDict(frozen=True)

    tokens_held: int
    positions_fed: int
    completion_tokens: int
    ttft_s: float
    tokens_per_s: float


class Reply(BaseModel):
    """An answer with the plan that produced it."""

    model_config = ConfigDict(frozen=True)

    text: str
    plan: ContextPlan
    usage: Usage
    finish_reason: str
    tool_exchanges: list[ToolExchange] = []


@dataclass(frozen=True)
class TextDelta:
    """A piece of the answer, as it is generated."""

    text: str


@dataclass(frozen=True)
class ReplyDone:
    """The stream's last event: the whole reply, stored in memory."""

    reply: Reply


StreamEvent: TypeAlias = Union[TextDelta, ToolCallEvent, ToolOutputEvent, ReplyDone]  # noqa: UP007


async def finish_reply(
    record: ContextPlan,
    final: Generation,
    *,
    text: str,
    reason: str,
    plan_log: PlanLog | None,
    exchanges: list[ToolExchange] | None = None,
) -> Reply:
    """The reply to return: the plan completed with timings, logged and kept."""
    plan = record.model_copy(
        update={
            "ttft_s": final.ttft_s,
            "tokens_per_s": final.tokens_per_s,
            "finish_reason": reason,
        }
    )
    log.info(
        "refrag.plan",
        tenant=plan.scope.tenant,
        session=plan.scope.session,
        positions_fed=plan.positions_fed,
        tokens_held=plan.tokens_held,
        chunks_expanded=plan.chunks_expanded,
        ttft_s=round(final.ttft_s, 4),
    )
    if plan_log is not None:
        await asyncio.to_thread(plan_log.append, plan)  # it may wait for a rewrite's lock
    usage = Usage(
        tokens_held=plan.tokens_held,
        positions_fed=plan.positions_fed,
        completion_tokens=len(final.token_ids),
        ttft_s=final.ttft_s,
        tokens_per_s=final.tokens_per_s,
    )
    return Reply(
        text=text,
        plan=plan,
        usage=usage,
        finish_reason=reason,
        tool_exchanges=exchanges or [],
    )
