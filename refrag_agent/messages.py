"""OpenAI-style chat messages as timeline writes, for ``Session.add_messages``.

Each message maps onto the segments a session already stores:

- ``system`` and ``developer``: one ``system`` segment;
- ``user``: one ``user`` turn;
- ``assistant``: an ``assistant`` turn when it has text, then one ``tool_call`` segment
  per entry of ``tool_calls`` (text: the call's JSON object, as the tool loop stores it);
- ``tool``: one ``tool_output`` segment, paired with the call it answers.

Calls and outputs carry :func:`~refrag_agent.tools.pairing_metadata`, exactly as the
tool loop writes them, so layout keeps or drops each pair whole. :func:`read_messages`
checks every message before :func:`plan_writes` turns them into writes, so a bad list
writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from refrag_agent.errors import InvalidInput
from refrag_agent.timeline import SegmentKind
from refrag_agent.tools import ToolCall, pairing_metadata

MessageLike: TypeAlias = Mapping[str, Any] | BaseModel
"""A message as a dict in the OpenAI chat format, or a pydantic model that dumps to one."""
Messages: TypeAlias = Sequence[MessageLike]


def _joined(value: Any) -> Any:
    """Content as one string: a string as is, a list of text parts joined by newlines."""
    if not isinstance(value, list):
        return value  # the field's type checks the rest
    texts = []
    for i, part in enumerate(value):
        if not (
            isinstance(part, Mapping)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ):
            raise ValueError(
                f"part {i} is not {{'type': 'text', 'text': str}}; only text is stored"
            )
        texts.append(part["text"])
    return "\n".join(texts)


def _not_blank(value: str) -> str:
    if not value or value.isspace():  # isspace: no copy of a text that may be huge
        raise ValueError("must not be empty")
    return value


Text = Annotated[str, BeforeValidator(_joined), AfterValidator(_not_blank)]


def _arguments(value: Any) -> Any:
    """OpenAI sends the arguments as a JSON string; a dict is accepted too."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value) if value.strip() else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e.msg} at char {e.pos}") from e


class _Message(BaseModel):
    # Extra keys (refusal, audio, annotations ... of an SDK's message object) are ignored.
    model_config = ConfigDict(frozen=True, extra="ignore")


class SystemMessage(_Message):
    """A ``system`` or ``developer`` message."""

    role: Literal["system", "developer"]
    content: Text
    name: str | None = None


class UserMessage(_Message):
    """A ``user`` message."""

    role: Literal["user"]
    content: Text
    name: str | None = None


class FunctionCall(BaseModel):
    """The ``function`` of a tool call: a name and a JSON object of arguments."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(min_length=1)
    arguments: Annotated[dict[str, Any], BeforeValidator(_arguments)] = {}


class ToolCallSpec(BaseModel):
    """One entry of an assistant message's ``tool_calls``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(_Message):
    """An ``assistant`` message: text, tool calls, or both."""

    role: Literal["assistant"]
    content: Annotated[str | None, BeforeValidator(_joined)] = None
    tool_calls: list[ToolCallSpec] = []
    name: str | None = None

    @model_validator(mode="after")
    def _says_something(self) -> AssistantMessage:
        if not (self.content and self.content.strip()) and not self.tool_calls:
            raise ValueError("an assistant message needs content or tool_calls")
        return self


class ToolMessage(_Message):
    """A ``tool`` message: the output of the call ``tool_call_id``."""

    role: Literal["tool"]
    content: Text
    tool_call_id: str = Field(min_length=1)


ChatMessage: TypeAlias = SystemMessage | UserMessage | AssistantMessage | ToolMessage

_BY_ROLE: dict[str, type[ChatMessage]] = {
    "system": SystemMessage,
    "developer": SystemMessage,
    "user": UserMessage,
    "assistant": AssistantMessage,
    "tool": ToolMessage,
}


def _path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path: ``tool_calls[0].function.name``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _invalid(index: int, field: str, problem: str) -> InvalidInput:
    """``field`` is a path in the message, or "" for the message as a whole."""
    where = f"messages[{index}]" + (f".{field}" if field else "")
    return InvalidInput(f"{where}: {problem}; nothing was written", index=index, field=field)


def read_messages(messages: Messages) -> list[ChatMessage]:
    """Validate a list of OpenAI-style messages; the first bad one raises ``InvalidInput``."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise InvalidInput("messages must be a list of messages", type=type(messages).__name__)
    parsed: list[ChatMessage] = []
    for index, message in enumerate(messages):
        raw = message.model_dump() if isinstance(message, BaseModel) else message
        if not isinstance(raw, Mapping):
            raise _invalid(
                index,
                "",
                f"a message must be a dict or a pydantic model, not {type(raw).__name__}",
            )
        role = raw.get("role")
        cls = _BY_ROLE.get(role) if isinstance(role, str) else None
        if cls is None:
            roles = ", ".join(sorted(_BY_ROLE))
            raise _invalid(index, "role", f"{role!r} is not one of {roles}")
        try:
            parsed.append(cls.model_validate(raw))
        except ValidationError as e:
            error = e.errors()[0]
            problem = str(error.get("ctx", {}).get("error", error["msg"]))
            raise _invalid(index, _path(error["loc"]), problem) from e
    return parsed


@dataclass(frozen=True)
class MessageWrite:
    """One segment to write: its kind, text, source and metadata, and its message's index."""

    index: int
    kind: SegmentKind
    text: str
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def plan_writes(
    messages: Sequence[ChatMessage],
    *,
    stored_calls: Mapping[str, str],
    answered: Collection[str],
) -> list[MessageWrite]:
    """The segment writes of validated messages, in order, with tool calls paired.

    ``stored_calls`` maps the call ids already in the session to their tool names and
    ``answered`` holds the ids that already have an output: a ``tool`` message may answer
    a call of the same list or a stored one, once. A call id is used by one call only.
    """
    calls = dict(stored_calls)
    done = set(answered)
    writes: list[MessageWrite] = []
    for index, m in enumerate(messages):
        named = {"name": m.name} if not isinstance(m, ToolMessage) and m.name else {}
        if isinstance(m, SystemMessage):
            writes.append(MessageWrite(index, SegmentKind.SYSTEM, m.content, metadata=named))
        elif isinstance(m, UserMessage):
            writes.append(MessageWrite(index, SegmentKind.USER, m.content, metadata=named))
        elif isinstance(m, AssistantMessage):
            if m.content and m.content.strip():
                writes.append(MessageWrite(index, SegmentKind.ASSISTANT, m.content, metadata=named))
            for j, spec in enumerate(m.tool_calls):
                if spec.id in calls:
                    raise _invalid(index, f"tool_calls[{j}].id", f"call id {spec.id!r} is taken")
                call = ToolCall(
                    id=spec.id, name=spec.function.name, arguments=spec.function.arguments
                )
                calls[call.id] = call.name
                writes.append(
                    MessageWrite(
                        index, SegmentKind.TOOL_CALL, call.text, call.name, pairing_metadata(call)
                    )
                )
        else:
            name = calls.get(m.tool_call_id)
            if name is None:
                problem = f"no assistant tool call with id {m.tool_call_id!r} comes before it"
                raise _invalid(index, "tool_call_id", problem)
            if m.tool_call_id in done:
                problem = f"call {m.tool_call_id!r} already has an output"
                raise _invalid(index, "tool_call_id", problem)
            done.add(m.tool_call_id)
            call = ToolCall(id=m.tool_call_id, name=name)
            writes.append(
                MessageWrite(
                    index, SegmentKind.TOOL_OUTPUT, m.content, name, pairing_metadata(call)
                )
            )
    return writes
