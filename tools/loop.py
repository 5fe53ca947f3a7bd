"""The tool loop: ask the model, run the tool it calls, hand back the output, ask again.

The loop knows nothing about the decoder or the memory. ``step()`` produces the model's
next output from everything appended so far (the agent re-plans its context before each
step); the loop parses that output, and either finishes with it as the answer or runs the
call and reports both the call and its output, which the agent appends to the timeline as
``tool_call`` and ``tool_output`` segments before the next step.

Nothing the model writes can crash the loop: a malformed call, a call that fails
validation, a tool that raises or runs past its timeout each become an error output
(``{"error": ..., "type": ...}``) the model reads on the next step. Cancellation is not
swallowed: cancelling the loop cancels the running tool (a sync tool's worker thread
cannot be interrupted and finishes in the background; its result is dropped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from refrag_agent.errors import InvalidInput
from refrag_agent.logs import get_logger
from refrag_agent.template import REFRAG_TEMPLATE, ChatTemplate

from .protocol import (
    AnyCall,
    ErrorType,
    MalformedCall,
    NoCall,
    ToolCall,
    error_text,
    output_text,
    parse_output,
    text_before_call,
)
from .registry import Tool, Toolbox, ToolLike

log = get_logger(__name__)

DEFAULT_MAX_TOOL_STEPS = 4
DEFAULT_TIMEOUT_S = 30.0

FinishReason: TypeAlias = Literal["answer", "max_tool_steps"]


class ToolOutput(BaseModel):
    """What a call gave back, as the text the model reads, paired with the call by id."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    name: str | None
    text: str
    is_error: bool = False
    error_type: ErrorType | None = None
    duration_s: float = 0.0
    value: Any = Field(default=None, exclude=True, repr=False)
    """The tool's return value as is (``None`` for an error); not serialised."""


class ToolExchange(BaseModel):
    """One call and its output."""

    model_config = ConfigDict(frozen=True)

    call: ToolCall | MalformedCall
    output: ToolOutput


class ToolLoopResult(BaseModel):
    """How a tool loop ended.

    ``text`` is the answer, or, when the loop stopped at ``max_tool_steps``, the model's
    words before the call it was not allowed to make (``pending_call``).
    """

    model_config = ConfigDict(frozen=True)

    text: str
    finish_reason: FinishReason
    exchanges: list[ToolExchange] = Field(default_factory=list)
    steps: int
    """How many times ``step()`` was called."""
    pending_call: ToolCall | MalformedCall | None = None

    @property
    def calls(self) -> list[ToolCall | MalformedCall]:
        return [e.call for e in self.exchanges]

    @property
    def outputs(self) -> list[ToolOutput]:
        return [e.output for e in self.exchanges]


@dataclass(frozen=True)
class ToolCallEvent:
    """The model called a tool (``step`` counts from 1); it has not run yet."""

    call: ToolCall | MalformedCall
    step: int


@dataclass(frozen=True)
class ToolOutputEvent:
    """A call's output (an error output for a malformed or failed call)."""

    call: ToolCall | MalformedCall
    output: ToolOutput
    step: int


@dataclass(frozen=True)
class ToolLoopDone:
    """The last event of :func:`iter_tool_loop`: the loop's result."""

    result: ToolLoopResult


ToolEvent: TypeAlias = ToolCallEvent | ToolOutputEvent | ToolLoopDone


def _error(call: AnyCall, error_type: ErrorType, message: str, **details: Any) -> ToolOutput:
    if call.name is not None:
        details = {"tool": call.name, **details}
    return ToolOutput(
        call_id=call.id,
        name=call.name,
        text=error_text(message, error_type, **details),
        is_error=True,
        error_type=error_type,
    )


@dataclass(frozen=True)
class _Raised:
    error: Exception


async def execute_call(
    call: AnyCall, toolbox: Toolbox, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ToolOutput:
    """Run one parsed call and return its output; never raises for the model's mistakes.

    The tool's own ``timeout_s`` wins over ``timeout_s``.
    """
    if isinstance(call, MalformedCall):
        return _error(call, call.reason, call.detail)
    found: Tool[..., Any] | None = toolbox.get(call.name)
    if found is None:
        offered = ", ".join(toolbox.names) or "none"
        return _error(call, "unknown_tool", f"no tool named {call.name!r}; tools: {offered}")
    try:
        kwargs = found.validate(call.arguments)
    except InvalidInput as e:
        return _error(
            call,
            "validation_error",
            "the arguments do not match the tool's schema",
            errors=e.context.get("errors", []),
        )

    async def guarded() -> Any:
        # The tool's own exceptions come back as values, so a TimeoutError below can only
        # be the deadline, never something the tool raised.
        try:
            return await found.run(kwargs)
        except Exception as e:
            return _Raised(e)

    limit = found.timeout_s or timeout_s
    start = time.perf_counter()
    try:
        value = await asyncio.wait_for(guarded(), timeout=limit)
    except asyncio.TimeoutError:
        log.warning("tool timed out", tool=call.name, call_id=call.id, timeout_s=limit)
        return _error(call, "timeout", f"the tool did not finish within {limit:g} s")
    duration = time.perf_counter() - start
    if isinstance(value, _Raised):
        log.info("tool raised", tool=call.name, call_id=call.id, error=repr(value.error))
        out = _error(
            call,
            "tool_error",
            f"{type(value.error).__name__}: {value.error}",
            exception=type(value.error).__name__,
        )
        return out.model_copy(update={"duration_s": duration})
    return ToolOutput(
        call_id=call.id,
        name=call.name,
        text=output_text(value),
        duration_s=duration,
        value=value,
    )


def _check_options(max_tool_steps: int, timeout_s: float) -> None:
    if isinstance(max_tool_steps, bool) or not isinstance(max_tool_steps, int):
        raise InvalidInput("max_tool_steps must be an int", max_tool_steps=max_tool_steps)
    if max_tool_steps < 0:
        raise InvalidInput("max_tool_steps must be 0 or more", max_tool_steps=max_tool_steps)
    if not timeout_s > 0:
        raise InvalidInput("timeout_s must be positive", timeout_s=timeout_s)


async def iter_tool_loop(
    step: Callable[[], Awaitable[str]],
    toolbox: Toolbox | Iterable[ToolLike],
    *,
    max_tool_steps: int = DEFAULT_MAX_TOOL_STEPS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    template: ChatTemplate = REFRAG_TEMPLATE,
) -> AsyncGenerator[ToolEvent, None]:
    """The tool loop as events: each call, each output, then :class:`ToolLoopDone`.

    The loop waits at each event until the consumer asks for the next one, so a consumer
    that appends the call on :class:`ToolCallEvent` and the output on
    :class:`ToolOutputEvent` has done so before the tool runs and before the next step.
    Close it with ``contextlib.aclosing`` when leaving early. ``template`` is the model's:
    its call marker is what a call starts with.
    """
    _check_options(max_tool_steps, timeout_s)
    tools = Toolbox.coerce(toolbox)
    exchanges: list[ToolExchange] = []
    steps = 0
    while True:
        output = await step()
        steps += 1
        parsed = parse_output(output, tools=tools, template=template)
        if isinstance(parsed, NoCall):
            result = ToolLoopResult(
                text=parsed.text, finish_reason="answer", exchanges=exchanges, steps=steps
            )
            break
        if len(exchanges) >= max_tool_steps:
            log.info("tool loop stopped", reason="max_tool_steps", max_tool_steps=max_tool_steps)
            result = ToolLoopResult(
                text=text_before_call(output, template).strip(),
                finish_reason="max_tool_steps",
                exchanges=exchanges,
                steps=steps,
                pending_call=parsed,
            )
            break
        yield ToolCallEvent(call=parsed, step=steps)
        tool_output = await execute_call(parsed, tools, timeout_s=timeout_s)
        exchanges.append(ToolExchange(call=parsed, output=tool_output))
        yield ToolOutputEvent(call=parsed, output=tool_output, step=steps)
    yield ToolLoopDone(result=result)


async def run_tool_loop(
    step: Callable[[], Awaitable[str]],
    toolbox: Toolbox | Iterable[ToolLike],
    *,
    on_call: Callable[[AnyCall], Awaitable[None]] | None = None,
    on_output: Callable[[AnyCall, ToolOutput], Awaitable[None]] | None = None,
    max_tool_steps: int = DEFAULT_MAX_TOOL_STEPS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    template: ChatTemplate = REFRAG_TEMPLATE,
) -> ToolLoopResult:
    """Run the model and its tool calls until it answers or uses up ``max_tool_steps``.

    ``step()`` returns the model's next output. A call is awaited through
    ``on_call(call)`` before the tool runs, its output through ``on_output(call, output)``
    before the next step: that is where the agent appends the two segments. At most
    ``max_tool_steps`` calls run; ``timeout_s`` bounds each (a tool's own ``timeout_s``
    wins). ``template`` is the model's chat template.
    """
    events = iter_tool_loop(
        step, toolbox, max_tool_steps=max_tool_steps, timeout_s=timeout_s, template=template
    )
    try:
        async for event in events:
            if isinstance(event, ToolCallEvent):
                if on_call is not None:
                    await on_call(event.call)
            elif isinstance(event, ToolOutputEvent):
                if on_output is not None:
                    await on_output(event.call, event.output)
            else:
                return event.result
    finally:
        await events.aclose()
    raise AssertionError("the tool loop ended without a result")  # pragma: no cover
