"""Tool-use dialogues: shapes, families, and the SDK's tools preamble in their layout."""

from __future__ import annotations

import json
import random

import pytest

from refrag_agent.engines.resolve import BUNDLED_MODEL
from refrag_agent.errors import InvalidInput
from refrag_agent.model.tokenizer import HFTokenizer, Tokenizer
from refrag_agent.template import CHATML_TEMPLATE
from refrag_agent.tools import tools_preamble
from refrag_agent.training.stages import layout_task
from refrag_agent.training.tool_dialogues import (
    HELDOUT_TOOLS,
    TRAIN_TOOLS,
    offered_tools,
    tool_example,
)


@pytest.fixture(scope="module")
def smol_tokenizer() -> HFTokenizer:
    return HFTokenizer.load(BUNDLED_MODEL / "tokenizer")


def test_same_seed_same_dialogue_and_shapes_differ() -> None:
    assert tool_example(3, shape="call") == tool_example(3, shape="call")
    call = tool_example(3, shape="call")
    answer = tool_example(3, shape="answer")
    assert call.calls_tool and not answer.calls_tool
    request = json.loads(call.answer)
    assert request["name"] in call.tools and call.references == (call.answer,)
    # The loop's second step: the same call and its output after the question, and the
    # value read from it.
    assert [s.kind for s in answer.exchange] == ["tool_call", "tool_output"]
    assert answer.question == call.question and answer.exchange[0].text == call.answer
    assert answer.answer in answer.exchange[1].text
    assert all(s.kind != "tool_call" for s in answer.segments)


def test_memory_questions_are_answered_without_a_call() -> None:
    ex = tool_example(5, shape="memory")
    assert ex.tools and not ex.calls_tool
    assert all(s.kind != "tool_call" for s in ex.segments)


def test_an_argument_told_earlier_is_recalled_from_memory() -> None:
    recalled = []
    for seed in range(60):
        ex = tool_example(seed, shape="call")
        args = json.loads(ex.answer)["arguments"]
        value = str(next(iter(args.values())))
        if value not in ex.question:
            recalled.append(ex)
            assert any(value in s.text for s in ex.segments if s.kind == "user")
    assert 5 < len(recalled) < 40


def test_heldout_tools_are_not_trained_on() -> None:
    train = {u.tool.name for u in TRAIN_TOOLS}
    assert train.isdisjoint(u.tool.name for u in HELDOUT_TOOLS)
    for seed in range(20):
        assert set(tool_example(seed, family="heldout").tools).isdisjoint(train)
        assert set(tool_example(seed).tools) <= train


def test_tools_are_real_and_deterministic() -> None:
    for use in (*TRAIN_TOOLS, *HELDOUT_TOOLS):
        value = use.values(random.Random(0))
        first = use.tool(**{use.arg: value})
        assert first == use.tool(**{use.arg: value})
        assert set(use.asks) <= set(first)


def test_the_layout_opens_with_the_agents_tools_preamble(smol_tokenizer: Tokenizer) -> None:
    ex = tool_example(2, size=4, shape="call")
    example, d = layout_task(ex, smol_tokenizer, k=16, template=CHATML_TEMPLATE)
    preamble = tools_preamble(offered_tools(ex.tools), CHATML_TEMPLATE)
    first = d.items[0]
    assert not isinstance(first, int)
    assert smol_tokenizer.decode(list(first.token_ids)) == preamble
    target = smol_tokenizer.decode(list(example.target))
    assert target == f"<tool_call>{ex.answer}<|im_end|>"


def test_the_exchange_follows_the_question_as_tokens(smol_tokenizer: Tokenizer) -> None:
    ex = tool_example(3, size=4, shape="answer")
    _, d = layout_task(ex, smol_tokenizer, k=16, template=CHATML_TEMPLATE)
    kinds = [s.kind.value for s in d.segments]
    assert kinds[-3:] == ["user", "tool_call", "tool_output"]
    assert all(s.pinned for s in d.segments[-3:]) and not any(s.pinned for s in d.segments[:-3])
    last = d.items[-1]
    assert not isinstance(last, int)
    assert smol_tokenizer.decode(list(last.token_ids)) == CHATML_TEMPLATE.generation_prompt


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInput):
        tool_example(1, family="other")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        tool_example(1, shape="twice")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        offered_tools(("no_such_tool",))
