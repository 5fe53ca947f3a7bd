from __future__ import annotations

import json

import pytest

from refrag_agent.errors import InvalidInput
from refrag_agent.tools import CALL_START, END, ScriptedDecoder, ToolCall, parse_output


async def test_plays_back_in_order_and_records_prompts() -> None:
    decoder = ScriptedDecoder(["one", lambda prompt: f"echo {prompt}", "three"])
    assert await decoder() == "one"
    assert await decoder("hi") == "echo hi"
    assert decoder.calls == 2
    assert decoder.remaining == 1
    assert decoder.prompts == [None, "hi"]
    assert decoder.outputs == ["one", "echo hi"]


async def test_scripted_exception_and_exhaustion() -> None:
    decoder = ScriptedDecoder([ConnectionError("down")])
    with pytest.raises(ConnectionError):
        await decoder()
    with pytest.raises(InvalidInput) as info:
        await decoder()
    assert info.value.context == {"scripted": 1}


def test_call_helper_writes_the_protocol() -> None:
    text = ScriptedDecoder.call("lookup_order", order_id=42)
    assert text.startswith(CALL_START) and text.endswith(END)
    assert json.loads(text[len(CALL_START) : -len(END)]) == {
        "name": "lookup_order",
        "arguments": {"order_id": 42},
    }
    parsed = parse_output(text, call_id="c")
    assert parsed == ToolCall(id="c", name="lookup_order", arguments={"order_id": 42})


async def test_stream_yields_pieces_of_the_next_output() -> None:
    decoder = ScriptedDecoder(["Your  code is 4821.", ""])
    pieces = [p async for p in decoder.stream("q")]
    assert pieces == ["Your", "  code", " is", " 4821."]
    assert "".join(pieces) == "Your  code is 4821."
    assert [p async for p in decoder.stream()] == []
    assert decoder.prompts == ["q", None]
