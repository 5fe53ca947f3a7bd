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
follows :attr:`ChatTemplate.generation_prompt` and ends at :attr:`ChatTemplate.answer_end`,
where decoding stops.

A decoder whose tokenizer has a chat template of its own is prompted in it:
:data:`CHATML_TEMPLATE` for SmolLM2 (``<|im_start|>user\n...<|im_end|>\n``). A checkpoint
names its template (``refrag.json``'s ``template``), and :func:`template_named` finds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from refrag_agent.errors import InvalidInput
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
    answer_end: str
    call_marker: str
    markers: tuple[str, ...]

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
        """An answer as the decoder writes it (a training target): the text, then its end."""
        return f"{text}{self.answer_end}"

    @property
    def tool_call(self) -> str:
        """The marker a model writes, after the generation prompt, before a call's JSON."""
        return self.call_marker

    @property
    def tool_output(self) -> str:
        return self.header(SegmentKind.TOOL_OUTPUT)

    @property
    def stop(self) -> tuple[str, ...]:
        """Where decoding stops: the end of the answer."""
        return (self.answer_end,)

    def stops(self, *, tool_calls: bool) -> tuple[str, ...]:
        """Where an answer stops: its end, and any template structure the model starts;
        the tool-call marker too when no tools were offered, so a model offered no tools
        never answers with a call."""
        others = [t for t in self.markers if t != self.call_marker]
        if not tool_calls:
            others.append(self.call_marker)
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


_REFRAG_HEADERS = {kind: f"<|{kind.value}|>" for kind in SegmentKind}
REFRAG_TEMPLATE = ChatTemplate(
    name="refrag",
    headers=_REFRAG_HEADERS,
    end="<|end|>",
    generation_prompt="<|assistant|>",
    bos="<|bos|>",
    eos="<|eos|>",
    pad="<|pad|>",
    answer_end="<|end|>",
    call_marker=_REFRAG_HEADERS[SegmentKind.TOOL_CALL],
    markers=("<|bos|>", "<|eos|>", "<|pad|>", *_REFRAG_HEADERS.values()),
)
"""The template of decoders built from scratch by this project (the tiny preset): its
strings are special tokens of the tokenizer the project trains."""

_IM_START, _IM_END = "<|im_start|>", "<|im_end|>"
CHATML_TEMPLATE = ChatTemplate(
    name="chatml",
    headers={
        SegmentKind.SYSTEM: f"{_IM_START}system\n",
        SegmentKind.USER: f"{_IM_START}user\n",
        SegmentKind.ASSISTANT: f"{_IM_START}assistant\n",
        SegmentKind.TOOL_CALL: f"{_IM_START}assistant\n<tool_call>",
        SegmentKind.TOOL_OUTPUT: f"{_IM_START}tool\n",
        SegmentKind.DOCUMENT: f"{_IM_START}document\n",
    },
    end=f"{_IM_END}\n",
    generation_prompt=f"{_IM_START}assistant\n",
    bos=_IM_START,
    eos=_IM_END,
    pad=_IM_END,
    answer_end=_IM_END,
    call_marker="<tool_call>",
    markers=(_IM_START, "<|endoftext|>"),
)
"""ChatML, the chat template of SmolLM2-Instruct (and of Qwen and others): roles after
``<|im_start|>``, each message closed by ``<|im_end|>``. Tool calls are assistant messages
that start with ``<tool_call>``; tool outputs are ``tool`` messages and documents
``document`` messages, roles the project's fine-tuning teaches."""

TEMPLATES = {t.name: t for t in (REFRAG_TEMPLATE, CHATML_TEMPLATE)}
TEMPLATE_STOPS = frozenset(
    s for t in TEMPLATES.values() for s in (*t.stops(tool_calls=False), *t.special_tokens)
)
"""Every string some template stops or frames with: stops a client need not send itself."""


def template_named(name: str) -> ChatTemplate:
    """The template a checkpoint names (``refrag.json``'s ``template``)."""
    if name not in TEMPLATES:
        raise InvalidInput("unknown chat template", template=name, known=sorted(TEMPLATES))
    return TEMPLATES[name]
