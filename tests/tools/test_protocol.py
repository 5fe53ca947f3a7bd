from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from pydantic import BaseModel

from refrag_agent.model.tokenizer import DEFAULT_SPECIALS
from refrag_agent.tools import (
    CALL_START,
    END,
    OUTPUT_START,
    MalformedCall,
    NoCall,
    Toolbox,
    ToolCall,
    error_text,
    format_call,
    format_output,
    new_call_id,
    output_text,
    pairing_metadata,
    parse_output,
    text_before_call,
    tool,
    tools_prompt,
)


@tool
def lookup_order(order_id: int) -> str:
    """Find an order by its number."""
    return f"order {order_id}"


BOX = Toolbox([lookup_order])


def test_markers_are_special_tokens_of_the_bundled_template() -> None:
    for marker in (CALL_START, OUTPUT_START, END):
        assert marker in DEFAULT_SPECIALS


def test_plain_text_is_the_answer() -> None:
    assert parse_output("Your code is 4821.", tools=BOX) == NoCall(text="Your code is 4821.")
    assert parse_output("Done.<|end|>\n", tools=BOX) == NoCall(text="Done.")


@pytest.mark.parametrize(
    "output",
    [
        '<|tool_call|>{"name": "lookup_order", "arguments": {"order_id": 42}}<|end|>',
        'Let me check. <|tool_call|> {"name": "lookup_order", "arguments": {"order_id": 42}} ',
        '<|tool_call|>{"name": "lookup_order", "arguments": "{\\"order_id\\": 42}"}<|end|>x',
        '<|tool_call|>{"name": "lookup_order", "arguments": {"order_id": 42}}<|end|>'
        '<|tool_call|>{"name": "other", "arguments": {}}<|end|>',
    ],
    ids=["plain", "prose-and-no-end", "arguments-as-json-string", "second-call-ignored"],
)
def test_a_valid_call(output: str) -> None:
    parsed = parse_output(output, tools=BOX, call_id="call_1")
    assert parsed == ToolCall(id="call_1", name="lookup_order", arguments={"order_id": 42})


def test_missing_arguments_mean_none() -> None:
    for body in ('{"name": "lookup_order"}', '{"name": "lookup_order", "arguments": null}'):
        parsed = parse_output(f"{CALL_START}{body}{END}", tools=BOX)
        assert isinstance(parsed, ToolCall)
        assert parsed.arguments == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"name": "lookup_order", "arguments": {"order_id": 42}', "bad_json"),
        ("", "bad_json"),
        ("   ", "bad_json"),
        ('["lookup_order", 42]', "bad_json"),
        ('{"name": "lookup_order"} trailing', "bad_json"),
        ('{"arguments": {"order_id": 42}}', "missing_name"),
        ('{"name": 7}', "missing_name"),
        ('{"name": ""}', "missing_name"),
        ('{"name": "delete_everything", "arguments": {}}', "unknown_tool"),
        ('{"name": "lookup_order", "arguments": [42]}', "bad_arguments"),
        ('{"name": "lookup_order", "arguments": "42"}', "bad_arguments"),
        ('{"name": "lookup_order", "arguments": "{oops"}', "bad_arguments"),
    ],
)
def test_malformed_calls(body: str, reason: str) -> None:
    parsed = parse_output(f"{CALL_START}{body}{END}", tools=BOX, call_id="call_9")
    assert isinstance(parsed, MalformedCall)
    assert parsed.reason == reason
    assert parsed.id == "call_9"
    assert parsed.raw == body.strip()
    assert parsed.text == body.strip()
    assert parsed.detail


def test_unknown_tool_lists_the_offered_ones() -> None:
    parsed = parse_output(f'{CALL_START}{{"name": "nope"}}{END}', tools=["b", "a"])
    assert isinstance(parsed, MalformedCall)
    assert parsed.name == "nope"
    assert "a, b" in parsed.detail


def test_without_tools_any_name_parses() -> None:
    parsed = parse_output(f'{CALL_START}{{"name": "anything"}}{END}')
    assert isinstance(parsed, ToolCall)


def test_call_ids_are_fresh() -> None:
    output = f'{CALL_START}{{"name": "lookup_order"}}{END}'
    first, second = parse_output(output), parse_output(output)
    assert isinstance(first, ToolCall) and isinstance(second, ToolCall)
    assert first.id != second.id
    assert new_call_id().startswith("call_")


def test_format_round_trips() -> None:
    call = ToolCall(name="lookup_order", arguments={"order_id": 42, "note": "café"})
    text = format_call(call)
    assert text == (
        '<|tool_call|>{"arguments": {"note": "café", "order_id": 42}, "name": "lookup_order"}'
        "<|end|>"
    )
    assert parse_output(text, tools=BOX, call_id=call.id) == call
    assert format_output('{"ok": true}') == '<|tool_output|>{"ok": true}<|end|>'


def test_text_before_call() -> None:
    assert text_before_call(f"Checking. {CALL_START}{{}}") == "Checking. "
    assert text_before_call("no call") == "no call"


class Order(BaseModel):
    id: int


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("as is", "as is"),
        ({"a": [1, 2]}, '{"a":[1,2]}'),
        (Order(id=3), '{"id":3}'),
        (Point(x=1), '{"x":1}'),
        (dt.date(2026, 1, 2), '"2026-01-02"'),
        (None, "null"),
        (object, str(object)),
    ],
)
def test_output_text(value: Any, text: str) -> None:
    assert output_text(value) == text


def test_error_text_is_json_the_model_can_read() -> None:
    text = error_text("boom", "tool_error", tool="x")
    assert json.loads(text) == {"error": "boom", "type": "tool_error", "tool": "x"}


def test_pairing_metadata() -> None:
    call = ToolCall(id="call_1", name="lookup_order")
    assert pairing_metadata(call) == {"tool_call_id": "call_1", "tool_name": "lookup_order"}
    bad = MalformedCall(id="call_2", reason="bad_json", detail="x", raw="{")
    assert pairing_metadata(bad) == {"tool_call_id": "call_2", "tool_name": ""}


def test_tools_prompt_lists_schemas_and_the_format() -> None:
    prompt = tools_prompt(BOX)
    assert CALL_START in prompt and END in prompt and OUTPUT_START in prompt
    schema_line = prompt.splitlines()[-1]
    assert json.loads(schema_line) == lookup_order.schema()["function"]
    assert tools_prompt(Toolbox()) == ""
