"""The prompt template: the only place the chat and tool template strings are written.

Every prompt refrag-agent feeds a decoder is framed here: the SDK's sessions, the
server's messages, training examples and the benchmarks all call :class:`ChatTemplate`
(through the context builder, :mod:`refrag_agent.context`), so a model is served the
layout it was trained on. The template of the bundled decoder, whose tokenizer holds these
strings as special tokens::

    <|system|>You are ...<|end|><|user|>My code is 4821.<|end|>
    <|tool_call|>{"name": "lookup", "arguments": {...}}<|end|><|tool_output|>{...}<|end|>
    <|user|>What is my code?<|end|><|assistant|>4821<|end|>

Each segment is its kind's header, its text, then :attr:`ChatTemplate.end`; the answer
follows :attr:`ChatTemplate.generation_prompt` and ends at ``end``, where decoding stops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from refrag_agent.timeline import SegmentKind


@dataclass(frozen=True)
class ChatTemplate:
    """How segments, the question and the answer are framed for one decoder."""

    name: str
    headers: Mapping[SegmentKind, str]
    end: str
    generation_prompt: str
    bos: str
    eos: str
    pad: str

    def header(self, kind: SegmentKind) -> str:
        """The text that opens a segment of ``kind``."""
        return self.headers[kind]

    def render(self, kind: SegmentKind, text: str) -> str:
        """One segment as plain prompt text: header, text, end."""
        return f"{self.header(kind)}{text}{self.end}"

    def question(self, text: str) -> str:
        """The user's question and the prompt the answer follows."""
        return f"{self.render(SegmentKind.USER, text)}{self.generation_prompt}"

    def answer(self, text: str) -> str:
        """An answer as the decoder writes it (a training target): the text, then the end."""
        return f"{text}{self.end}"

    @property
    def tool_call(self) -> str:
        """The marker a model writes before a tool call's JSON."""
        return self.header(SegmentKind.TOOL_CALL)

    @property
    def tool_output(self) -> str:
        return self.header(SegmentKind.TOOL_OUTPUT)

    @property
    def stop(self) -> tuple[str, ...]:
        """Where decoding stops: the end of the answer segment."""
        return (self.end,)

    def stops(self, *, tool_calls: bool) -> tuple[str, ...]:
        """Where an answer stops: its end, and any other template token the model starts;
        the tool-call marker only when tools were offered, so a model offered no tools
        never answers with a call."""
        others = (t for t in self.special_tokens if not (tool_calls and t == self.tool_call))
        return tuple(dict.fromkeys((*self.stop, *others)))

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """Every template string a tokenizer must hold as one special token, in id order."""
        kinds = (
            SegmentKind.SYSTEM,
            SegmentKind.USER,
            SegmentKind.ASSISTANT,
            SegmentKind.TOOL_CALL,
            SegmentKind.TOOL_OUTPUT,
            SegmentKind.DOCUMENT,
        )
        return (self.bos, self.eos, self.pad, *(self.headers[k] for k in kinds), self.end)


REFRAG_TEMPLATE = ChatTemplate(
    name="refrag",
    headers={kind: f"<|{kind.value}|>" for kind in SegmentKind},
    end="<|end|>",
    generation_prompt="<|assistant|>",
    bos="<|bos|>",
    eos="<|eos|>",
    pad="<|pad|>",
)
"""The template of decoders trained by this project (the bundled tiny model)."""
