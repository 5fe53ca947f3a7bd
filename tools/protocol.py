"""The decoder's tool-call format: parse calls out of model output, format calls and outputs.

The model calls a tool by writing ONE JSON object between two special tokens of the
bundled decoder's template::

    <|tool_call|>{"arguments": {"order_id": 42}, "name": "lookup_order"}<|end|>

Text before the marker is the model's own words; anything after the first call is
ignored (one call per step). A missing ``<|end|>`` is accepted, because decoding usually
stops on it and drops it. The tool's result comes back as a ``tool_output`` segment,
rendered ``<|tool_output|>...<|end|>``. The full description, with the error outputs, is
``docs/tools.md``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from refrag_agent.template import REFRAG_TEMPLATE, ChatTemplate
from refrag_agent.timeline import SegmentKind

from .registry import Toolbox

# The markers of the project's own template; every function below takes the model's
# template (``template=``), which for a decoder with a chat template of its own differs.
CALL_START = REFRAG_TEMPLATE.tool_call
OUTPUT_START = REFRAG_TEMPLATE.tool_output
END = REFRAG_TEMPLATE.end

MalformedReason: TypeAlias = Literal["bad_json", "missing_name", "unknown_tool", "bad_arguments"]
"""Why a call could not be run: the ``type`` of its error output."""

ErrorType: TypeAlias = Literal[
    "bad_json",
    "missing_name",
    "unknown_tool",
    "bad_arguments",
    "validation_error",
    "timeout",
    "tool_error",
]
"""Every ``type`` an error output can carry."""


def new_call_id() -> str:
    """A fresh call id, unique enough to pair an output with its call across a timeline."""
    return f"call_{uuid.uuid4().hex[:16]}"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def call_text(name: str, arguments: dict[str, Any]) -> str:
    """A call as the JSON object of the format, the one way every part writes it (stored
    calls, training targets): ``{"arguments": {...}, "name": ...}``, keys sorted."""
    return json.dumps(
        {"name": name, "arguments": arguments},
        ensure_ascii=False,
        separators=(", ", ": "),
        sort_keys=True,
    )


class NoCall(BaseModel):
    """The output holds no tool call: it is the model's answer."""

    model_config = ConfigDict(frozen=True)

    text: str


class ToolCall(BaseModel):
    """A well-formed call of a known tool (its arguments are not validated yet)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_call_id)
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    @property
    def text(self) -> str:
        """The call as the JSON object of the format: the body of its ``tool_call`` segment."""
        return call_text(self.name, self.arguments)


class MalformedCall(BaseModel):
    """A call marker followed by something that cannot be run, and why.

    It still gets an id: its error output is paired with it like any other.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_call_id)
    reason: MalformedReason
    detail: str
    raw: str
    name: str | None = None

    @property
    def text(self) -> str:
        """What the model wrote between the markers: the body of its ``tool_call`` segment."""
        return self.raw


ParsedOutput: TypeAlias = NoCall | ToolCall | MalformedCall
AnyCall: TypeAlias = ToolCall | MalformedCall


def text_before_call(output: str, template: ChatTemplate = REFRAG_TEMPLATE) -> str:
    """The model's words before its call marker (the whole output when it has none)."""
    return output.split(template.tool_call, 1)[0]


def parse_output(
    output: str,
    *,
    tools: Toolbox | Collection[str] | None = None,
    call_id: str | None = None,
    template: ChatTemplate = REFRAG_TEMPLATE,
) -> ParsedOutput:
    """Read one model output: an answer, a tool call, or a call that cannot be run.

    ``tools`` names the tools on offer (a toolbox or names); a call to any other name is
    ``unknown_tool``. ``None`` skips that check. ``call_id`` fixes the id given to a call
    (a fresh one by default). ``template`` is the model's (its call marker and end).
    """
    cid = call_id or new_call_id()
    start, end = template.tool_call, template.answer_end
    if start not in output:
        answer = output.rstrip()
        if answer.endswith(end):
            answer = answer[: -len(end)].rstrip()
        return NoCall(text=answer)

    body = output.split(start, 1)[1].split(end, 1)[0]
    raw = body.strip()

    def malformed(reason: MalformedReason, detail: str, name: str | None = None) -> MalformedCall:
        return MalformedCall(id=cid, reason=reason, detail=detail, raw=raw, name=name)

    if not raw:
        return malformed("bad_json", "nothing between the call marker and <|end|>")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        return malformed("bad_json", f"not one JSON object: {e.msg} at char {e.pos}")
    if not isinstance(value, dict):
        return malformed("bad_json", f"expected a JSON object, got {type(value).__name__}")

    name = value.get("name")
    if not isinstance(name, str) or not name:
        return malformed("missing_name", 'the call has no "name" string')
    known = tools.names if isinstance(tools, Toolbox) else tools
    if known is not None and name not in known:
        offered = ", ".join(sorted(known)) or "none"
        return malformed("unknown_tool", f"no tool named {name!r}; tools: {offered}", name)

    arguments = value.get("arguments", {})
    if isinstance(arguments, str):
        # OpenAI-style models encode the arguments as a JSON string; accept that too.
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            return malformed("bad_arguments", f'"arguments" string is not JSON: {e.msg}', name)
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return malformed(
            "bad_arguments", f'"arguments" must be an object, got {type(arguments).__name__}', name
        )
    return ToolCall(id=cid, name=name, arguments=arguments)


def format_call(call: AnyCall, template: ChatTemplate = REFRAG_TEMPLATE) -> str:
    """The call with its markers, as the model writes it."""
    return f"{template.tool_call}{call.text}{template.answer_end}"


def format_output(output_text: str, template: ChatTemplate = REFRAG_TEMPLATE) -> str:
    """A tool's output with its markers, as the template renders a ``tool_output``."""
    return template.render(SegmentKind.TOOL_OUTPUT, output_text)


def output_text(value: Any) -> str:
    """A tool's return value as the text the model reads.

    A string is used as is; anything else (dicts, lists, pydantic models, dataclasses,
    dates ...) as JSON; a value JSON cannot express falls back to ``str``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return to_json(value).decode("utf-8")
    except Exception:  # pydantic-core cannot serialise it: the model still gets text
        return str(value)


def error_text(message: str, error_type: ErrorType, **details: Any) -> str:
    """The error output a model reads: ``{"error": ..., "type": ..., **details}``."""
    return _dumps({"error": message, "type": error_type, **details})


def pairing_metadata(call: AnyCall) -> dict[str, str]:
    """Segment metadata that ties a ``tool_call`` and its ``tool_output`` together.

    Put it on both segments; trimming, compaction and layout must keep or drop the two
    together, keyed on ``tool_call_id``.
    """
    return {"tool_call_id": call.id, "tool_name": call.name or ""}


_PROMPT = """\
You can call tools. To call one, write exactly one JSON object naming the tool and its \
arguments between {start} and {end}, then stop:
{start}{{"arguments": {{<argument>: <value>, ...}}, "name": "<tool name>"}}{end}
One call at a time. The result comes back after {output}. A result of the form \
{{"error": "...", "type": "..."}} means the call failed: read it, then fix the call or \
answer without the tool. When you have what you need, answer in plain text with no call.

Tools (OpenAI function schemas, one per line):
{schemas}"""


def tools_prompt(tools: Toolbox, template: ChatTemplate = REFRAG_TEMPLATE) -> str:
    """The system-prompt text that lists the tools' schemas and explains the call format
    in ``template``'s markers (the model's).

    Empty when the toolbox is: a model offered no tools is told nothing about them.
    """
    if not len(tools):
        return ""
    schemas = "\n".join(_dumps(s["function"]) for s in tools.schemas())
    return _PROMPT.format(
        start=template.tool_call,
        end=template.answer_end,
        output=template.tool_output.strip(),
        schemas=schemas,
    )


def tools_preamble(tools: Toolbox, template: ChatTemplate = REFRAG_TEMPLATE) -> str:
    """The system segment that opens the prompt when tools are offered: :func:`tools_prompt`
    rendered in ``template``. The agent, the server and training all put exactly this
    first; empty when the toolbox is."""
    if not len(tools):
        return ""
    return template.render(SegmentKind.SYSTEM, tools_prompt(tools, template))
