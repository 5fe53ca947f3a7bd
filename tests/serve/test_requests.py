"""How a chat request becomes a plan, sampling options and an OpenAI answer."""

from __future__ import annotations

from typing import Any

import pytest

from refrag_agent.budget import Budget
from refrag_agent.errors import InvalidInput
from refrag_agent.model.assembly import CompressedChunk
from refrag_agent.model.generation import Generation
from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.limits import ServeLimits
from refrag_agent.serve.requests import ChatRequest, Prepared, build_plan
from refrag_agent.template import REFRAG_TEMPLATE
from refrag_agent.timeline import SegmentKind
from refrag_agent.tools import ScriptedDecoder

from .util import FACTS, NAME

OLD = f"Box 0 holds this: {FACTS}"
TOOL = {"type": "function", "function": {"name": "get_order", "parameters": {"type": "object"}}}


def prepare(model: RefragModel, messages: list[Any], **fields: Any) -> Prepared:
    chat = ChatRequest.model_validate({"model": NAME, "messages": messages, **fields})
    return build_plan(chat, model, fetched={}, limits=ServeLimits(), budget=Budget())


def visible(model: RefragModel, prepared: Prepared) -> str:
    """The prompt's text with compressed chunks left out."""
    ids = [
        t
        for p in prepared.plan.placements
        if not isinstance(p, CompressedChunk)
        for t in p.token_ids
    ]
    return model.tokenizer.decode(ids)


def test_the_system_prompt_and_the_last_turns_stay_tokens(serve_model: RefragModel) -> None:
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": OLD},
        {"role": "assistant", "content": f"Noted: {FACTS}"},
        {"role": "user", "content": "And box 1?"},
        {"role": "assistant", "content": "Box 1 is empty."},
        {"role": "user", "content": "What is in box 0?"},
    ]
    text = visible(serve_model, prepare(serve_model, messages))
    assert "Answer briefly." in text
    last = "<|assistant|>Box 1 is empty.<|end|><|user|>What is in box 0?<|end|><|assistant|>"
    assert text.endswith(last)
    assert FACTS[:16] not in text  # the old turns are chunk embeddings
    everything = prepare(serve_model, messages, refrag={"budget": {"p": 1}})
    assert OLD in visible(serve_model, everything)


def test_a_tool_exchange_follows_the_query(serve_model: RefragModel) -> None:
    """The question, then the call and output written after it, as in an SDK session's
    tool loop; earlier messages before the question."""
    call = {"id": "c1", "type": "function", "function": {"name": "get_order", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "Hello."},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
    ]
    prepared = prepare(serve_model, messages, refrag={"budget": {"p": 1}}, tools=[TOOL])
    text = visible(serve_model, prepared)
    assert text.endswith(
        "<|user|>Hello.<|end|><|assistant|>Hi.<|end|><|user|>Where is my order?<|end|>"
        '<|tool_call|>{"arguments": {}, "name": "get_order"}<|end|><|tool_output|>shipped<|end|>'
        "<|assistant|>"
    )
    assert text.startswith(REFRAG_TEMPLATE.header(SegmentKind.SYSTEM) + "You can call tools.")


def test_decoding_stops_at_template_tokens(serve_model: RefragModel) -> None:
    ask = [{"role": "user", "content": "hi"}]
    plain = prepare(serve_model, ask, stop="\n").params.stop
    assert plain[:2] == ("\n", REFRAG_TEMPLATE.end)
    assert set(REFRAG_TEMPLATE.special_tokens) <= set(plain)
    offered = prepare(serve_model, ask, tools=[TOOL]).params.stop
    assert REFRAG_TEMPLATE.end in offered and REFRAG_TEMPLATE.tool_call not in offered
    assert prepare(serve_model, ask, stop="\n", ignore_eos=True).params.stop == ("\n",)
    forced = prepare(serve_model, ask, tools=[TOOL], tool_choice="required")
    assert visible(serve_model, forced).endswith(
        REFRAG_TEMPLATE.generation_prompt + REFRAG_TEMPLATE.tool_call
    )


def answer(prepared: Prepared, text: str, reason: str = "stop") -> tuple[dict[str, Any], str]:
    return prepared.answer(Generation(text=text, finish_reason=reason))  # type: ignore[arg-type]


def test_answers_as_openai_messages(serve_model: RefragModel) -> None:
    ask = [{"role": "user", "content": "Where is order 7?"}]
    call = ScriptedDecoder.call("get_order", order_id=7).removesuffix(REFRAG_TEMPLATE.end)
    offered = prepare(serve_model, ask, tools=[TOOL])
    message, reason = answer(offered, f"Let me look.{call}")
    assert reason == "tool_calls" and message["content"] == "Let me look."
    (made,) = message["tool_calls"]
    assert made["type"] == "function" and made["function"] == {
        "name": "get_order",
        "arguments": '{"order_id": 7}',
    }
    assert answer(offered, "It ships today.", "length") == (
        {"role": "assistant", "content": "It ships today."},
        "length",
    )
    unknown = ScriptedDecoder.call("delete_everything")
    assert answer(offered, f"Sure.{unknown}") == ({"role": "assistant", "content": "Sure."}, "stop")
    forced = prepare(serve_model, ask, tools=[TOOL], tool_choice="required")
    assert answer(forced, '{"name": "get_order", "arguments": {}}')[1] == "tool_calls"
    plain = prepare(serve_model, ask)
    assert answer(plain, "Today.", "eos") == ({"role": "assistant", "content": "Today."}, "stop")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"tool_choice": "required"}, "tool_choice needs tools"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "not in tools",
        ),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tool name"),
    ],
)
def test_tool_mistakes(serve_model: RefragModel, fields: dict[str, Any], message: str) -> None:
    chat = ChatRequest.model_validate(
        {"model": NAME, "messages": [{"role": "user", "content": "x"}], **fields}
    )
    with pytest.raises(InvalidInput, match=message):
        chat.check(ServeLimits())
        build_plan(chat, serve_model, fetched={}, limits=ServeLimits(), budget=Budget())


def test_too_long_even_compressed(serve_model: RefragModel) -> None:
    long = [{"role": "user", "content": "x" * serve_model.shape.max_positions}]
    with pytest.raises(InvalidInput, match="even compressed"):
        prepare(serve_model, long, max_tokens=8)
