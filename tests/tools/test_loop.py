from __future__ import annotations

import asyncio
import json
import time
from contextlib import aclosing
from typing import Any

import pytest

from refrag_agent.errors import InvalidInput
from refrag_agent.tools import (
    AnyCall,
    MalformedCall,
    ScriptedDecoder,
    ToolCall,
    ToolCallEvent,
    ToolLike,
    ToolLoopDone,
    ToolOutput,
    ToolOutputEvent,
    execute_call,
    format_call,
    format_output,
    iter_tool_loop,
    run_tool_loop,
    tool,
)

call = ScriptedDecoder.call


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
async def lookup_order(order_id: int) -> dict[str, Any]:
    """Find an order by its number."""
    await asyncio.sleep(0)
    return {"order_id": order_id, "status": "shipped"}


@tool
def explode(reason: str) -> str:
    """Always raises."""
    raise ValueError(reason)


@tool
def self_timeout() -> str:
    """Raises TimeoutError itself: a tool error, not the loop's deadline."""
    raise TimeoutError("upstream timed out")


@tool
async def slow(seconds: float) -> str:
    """Sleeps."""
    await asyncio.sleep(seconds)
    return "woke"


@tool
def slow_sync(seconds: float) -> str:
    """Sleeps in its worker thread."""
    time.sleep(seconds)
    return "woke"


@tool(timeout_s=0.05)
async def impatient() -> str:
    """Has its own short timeout."""
    await asyncio.sleep(5)
    return "never"


TOOLS: list[ToolLike] = [add, lookup_order, explode, self_timeout, slow, slow_sync, impatient]


class Transcript:
    """What an agent would do: append the call and the output as segments."""

    def __init__(self) -> None:
        self.segments: list[tuple[str, str, str]] = []  # (kind, call id, text)

    async def on_call(self, c: AnyCall) -> None:
        self.segments.append(("tool_call", c.id, format_call(c)))

    async def on_output(self, c: AnyCall, output: ToolOutput) -> None:
        assert output.call_id == c.id
        self.segments.append(("tool_output", output.call_id, format_output(output.text)))

    def render(self) -> str:
        return "".join(text for _, _, text in self.segments)


async def run(script: list[Any], **options: Any) -> tuple[Any, Transcript, ScriptedDecoder]:
    decoder = ScriptedDecoder(script)
    transcript = Transcript()

    async def step() -> str:
        return await decoder(transcript.render())

    result = await run_tool_loop(
        step, TOOLS, on_call=transcript.on_call, on_output=transcript.on_output, **options
    )
    return result, transcript, decoder


def error_of(output: ToolOutput) -> dict[str, Any]:
    assert output.is_error
    payload: dict[str, Any] = json.loads(output.text)
    assert payload["type"] == output.error_type
    return payload


async def test_answer_without_a_call() -> None:
    result, transcript, decoder = await run(["Hello!"])
    assert result.text == "Hello!"
    assert result.finish_reason == "answer"
    assert result.exchanges == []
    assert result.steps == 1
    assert result.pending_call is None
    assert transcript.segments == []
    assert decoder.prompts == [""]


async def test_valid_calls_sync_and_async() -> None:
    result, transcript, decoder = await run(
        [call("add", a=2, b="3"), call("lookup_order", order_id=7), "2+3=5; order 7 shipped."]
    )
    assert result.finish_reason == "answer"
    assert result.text == "2+3=5; order 7 shipped."
    assert result.steps == 3
    first, second = result.outputs
    assert (first.text, first.value, first.is_error) == ("5", 5, False)
    assert json.loads(second.text) == {"order_id": 7, "status": "shipped"}
    assert [c.name for c in result.calls] == ["add", "lookup_order"]
    # Each step saw every call and output appended before it.
    assert decoder.prompts[1] == "".join(t for _, _, t in transcript.segments[:2])
    assert "<|tool_output|>5<|end|>" in (decoder.prompts[1] or "")
    assert decoder.prompts[2] == transcript.render()


async def test_calls_and_outputs_stay_paired() -> None:
    result, transcript, _ = await run(
        [call("add", a=1, b=1), "<|tool_call|>{oops<|end|>", call("explode", reason="x"), "ok"]
    )
    ids = [c.id for c in result.calls]
    assert len(set(ids)) == 3
    assert [o.call_id for o in result.outputs] == ids
    # call, output, call, output ... in the timeline, keyed by the same id.
    kinds = [(kind, cid) for kind, cid, _ in transcript.segments]
    assert kinds == [(k, cid) for cid in ids for k in ("tool_call", "tool_output")]


async def test_call_is_appended_before_the_tool_runs() -> None:
    transcript = Transcript()
    seen_when_running: list[int] = []

    @tool
    def probe() -> str:
        """Looks at the transcript while running."""
        seen_when_running.append(len(transcript.segments))
        return "ok"

    decoder = ScriptedDecoder([call("probe"), "done"])
    await run_tool_loop(
        decoder, [probe], on_call=transcript.on_call, on_output=transcript.on_output
    )
    assert seen_when_running == [1]
    assert len(transcript.segments) == 2


@pytest.mark.parametrize(
    ("output", "error_type"),
    [
        ('<|tool_call|>{"name": "add", "arguments": {"a": 1<|end|>', "bad_json"),
        ('<|tool_call|>{"arguments": {}}<|end|>', "missing_name"),
        ('<|tool_call|>{"name": "rm_rf", "arguments": {}}<|end|>', "unknown_tool"),
        ('<|tool_call|>{"name": "add", "arguments": [1, 2]}<|end|>', "bad_arguments"),
    ],
)
async def test_malformed_call_becomes_an_error_output(output: str, error_type: str) -> None:
    result, transcript, decoder = await run([output, "Sorry."])
    assert result.finish_reason == "answer"
    assert result.text == "Sorry."
    (exchange,) = result.exchanges
    assert isinstance(exchange.call, MalformedCall)
    assert exchange.call.reason == error_type
    payload = error_of(exchange.output)
    assert payload["error"] == exchange.call.detail
    # The model reads the error on its next step, next to what it wrote.
    assert exchange.output.text in (decoder.prompts[1] or "")
    assert transcript.segments[0][2] == format_call(exchange.call)


async def test_wrong_argument_types_become_a_validation_error() -> None:
    result, _, _ = await run([call("add", a="one", b=2), call("add", a=1), "gave up"])
    first, second = (error_of(o) for o in result.outputs)
    assert first["type"] == "validation_error"
    assert first["tool"] == "add"
    assert [e["loc"] for e in first["errors"]] == [["a"]]
    assert [e["loc"] for e in second["errors"]] == [["b"]]
    assert second["errors"][0]["type"] == "missing"


async def test_raising_tool_becomes_a_tool_error() -> None:
    result, _, _ = await run([call("explode", reason="disk on fire"), "It failed."])
    (output,) = result.outputs
    payload = error_of(output)
    assert payload == {
        "error": "ValueError: disk on fire",
        "type": "tool_error",
        "tool": "explode",
        "exception": "ValueError",
    }
    assert output.value is None
    assert result.text == "It failed."


async def test_a_tool_raising_timeout_error_is_a_tool_error() -> None:
    result, _, _ = await run([call("self_timeout"), "ok"], timeout_s=5)
    assert error_of(result.outputs[0])["type"] == "tool_error"


@pytest.mark.parametrize("name", ["slow", "slow_sync"])
async def test_tool_timeout(name: str) -> None:
    start = time.perf_counter()
    result, _, _ = await run(
        [call(name, seconds=0.3 if name == "slow_sync" else 10), "late"], timeout_s=0.05
    )
    assert time.perf_counter() - start < 0.25
    payload = error_of(result.outputs[0])
    assert payload["type"] == "timeout"
    assert "0.05" in payload["error"]
    assert result.text == "late"


async def test_a_tools_own_timeout_wins() -> None:
    start = time.perf_counter()
    result, _, _ = await run([call("impatient"), "ok"], timeout_s=30)
    assert time.perf_counter() - start < 1
    assert error_of(result.outputs[0])["type"] == "timeout"


async def test_step_limit() -> None:
    result, transcript, decoder = await run(
        [call("add", a=1, b=1), call("add", a=2, b=2), "Still need: " + call("add", a=3, b=3)],
        max_tool_steps=2,
    )
    assert result.finish_reason == "max_tool_steps"
    assert len(result.exchanges) == 2
    assert result.steps == 3
    assert decoder.remaining == 0
    assert isinstance(result.pending_call, ToolCall)
    assert result.pending_call.arguments == {"a": 3, "b": 3}
    assert result.text == "Still need:"
    # The call that was not run is not in the timeline.
    assert len(transcript.segments) == 4


async def test_zero_tool_steps_runs_no_tool() -> None:
    result, transcript, _ = await run([call("add", a=1, b=1)], max_tool_steps=0)
    assert result.finish_reason == "max_tool_steps"
    assert result.exchanges == []
    assert transcript.segments == []


async def test_malformed_calls_count_as_steps() -> None:
    result, _, _ = await run(["<|tool_call|>nope<|end|>"] * 3, max_tool_steps=2)
    assert result.finish_reason == "max_tool_steps"
    assert isinstance(result.pending_call, MalformedCall)


@pytest.mark.parametrize(
    "options",
    [{"max_tool_steps": -1}, {"max_tool_steps": 1.5}, {"max_tool_steps": True}, {"timeout_s": 0}],
)
async def test_bad_options(options: dict[str, Any]) -> None:
    decoder = ScriptedDecoder(["x"])
    with pytest.raises(InvalidInput):
        await run_tool_loop(decoder, TOOLS, **options)
    assert decoder.calls == 0


async def test_decoder_failures_propagate() -> None:
    with pytest.raises(RuntimeError, match="decoder down"):
        await run([call("add", a=1, b=2), RuntimeError("decoder down")])


async def test_cancelling_the_loop_cancels_the_tool() -> None:
    cancelled = asyncio.Event()

    @tool
    async def forever() -> str:
        """Never returns."""
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    outputs: list[ToolOutput] = []

    async def on_output(c: AnyCall, o: ToolOutput) -> None:
        outputs.append(o)

    task = asyncio.create_task(
        run_tool_loop(ScriptedDecoder([call("forever"), "x"]), [forever], on_output=on_output)
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
    assert outputs == []


async def test_events_for_streaming() -> None:
    decoder = ScriptedDecoder([call("add", a=1, b=2), "3"])
    async with aclosing(iter_tool_loop(decoder, [add])) as events:
        seen = [event async for event in events]
    call_event, output_event, done = seen
    assert isinstance(call_event, ToolCallEvent) and call_event.step == 1
    assert isinstance(output_event, ToolOutputEvent)
    assert output_event.call is call_event.call
    assert output_event.output.call_id == call_event.call.id
    assert isinstance(done, ToolLoopDone)
    assert done.result.text == "3"
    assert done.result.exchanges[0].call is call_event.call


async def test_leaving_the_event_stream_early_runs_nothing_more() -> None:
    decoder = ScriptedDecoder([call("add", a=1, b=2), "3"])
    async with aclosing(iter_tool_loop(decoder, [add])) as events:
        first = await anext(events)
    assert isinstance(first, ToolCallEvent)
    assert decoder.calls == 1


async def test_execute_call_directly() -> None:
    from refrag_agent.tools import Toolbox

    box = Toolbox([add])
    out = await execute_call(ToolCall(id="c1", name="add", arguments={"a": 1, "b": 2}), box)
    assert (out.call_id, out.text) == ("c1", "3")
    # A call parsed without a toolbox can still name a tool that is not there.
    missing = await execute_call(ToolCall(id="c2", name="nope"), box)
    assert error_of(missing)["type"] == "unknown_tool"
