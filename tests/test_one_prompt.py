"""One prompt: the SDK, the server and training lay the same conversation out alike.

The same conversation goes through the three paths, with every chunk expanded: an SDK
session (its plan caught by a scripted engine), the server's ``build_plan`` on the
equivalent OpenAI messages, and training's ``layout_task`` on the equivalent task. Each
plan, flattened to token ids, must be the same prompt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from refrag_agent.agent import Agent
from refrag_agent.budget import Budget
from refrag_agent.engines import TINY_MODEL, ScriptedEngine
from refrag_agent.model.assembly import ExpandedChunk, Placement, PlacementPlan, TokenSpan
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import load_tokenizer
from refrag_agent.serve.limits import ServeLimits
from refrag_agent.serve.requests import ChatRequest, build_plan
from refrag_agent.template import REFRAG_TEMPLATE
from refrag_agent.timeline import SegmentKind
from refrag_agent.training.stages import EVERY_CHUNK, layout_task
from refrag_agent.training.tasks import Segment, TaskExample
from refrag_agent.training.tool_dialogues import TRAIN_TOOLS

EVERYTHING = Budget(p=1.0)
SYSTEM = "You are a helpful assistant. Answer in a few words."
TURNS = (
    ("user", "My locker code is 4821, and I keep my bike in the second rack."),
    ("assistant", "Noted: locker 4821, bike in the second rack."),
    ("user", "The team meeting moved to Thursday at noon, in room 12B."),
    ("assistant", "Thursday at noon, room 12B."),
)
NOTE = '{"note": "The wifi password is harbor42."}'
DOCUMENT = "Notes from the office move. Parking spots were reassigned. End of notes."
QUESTION = "What is the wifi password?"


@pytest.fixture(scope="module")
def model(minilm: ChunkEncoder) -> RefragModel:
    """The bundled model's BPE tokenizer (so text splits as it does in use), a small random
    decoder with room for the whole conversation, and the real encoder."""
    tokenizer = load_tokenizer(TINY_MODEL / "tokenizer")
    decoder = random_decoder("llama", vocab_size=tokenizer.vocab_size, hidden_size=32, seed=1)
    return RefragModel.create(tokenizer=tokenizer, decoder=decoder, encoder=minilm)


def token_ids(placements: Sequence[Placement]) -> list[int]:
    """The prompt with every chunk as its tokens; a compressed chunk fails the test."""
    out: list[int] = []
    for p in placements:
        assert isinstance(p, (TokenSpan, ExpandedChunk)), "every chunk must be expanded"
        out.extend(p.token_ids)
    return out


async def sdk_plan(model: RefragModel, tmp_path: Path) -> PlacementPlan:
    engine = ScriptedEngine(model, ["harbor42"])
    async with Agent.open(engine=engine, memory=tmp_path / "memory", budget=EVERYTHING) as agent:
        session = agent.session(tenant="acme", session="one")
        await session.add_system(SYSTEM)
        for role, text in TURNS:
            await session.add_turn(role, text)  # type: ignore[arg-type]
        await session.add_tool_output("notes", NOTE)
        await session.add_document(DOCUMENT)
        await session.respond(QUESTION)
    return engine.plans[0]


def server_plan(
    model: RefragModel, messages: list[dict[str, object]], **fields: object
) -> PlacementPlan:
    chat = ChatRequest.model_validate({"model": "m", "messages": messages, **fields})
    prepared = build_plan(chat, model, fetched={}, limits=ServeLimits(), budget=EVERYTHING)
    return prepared.plan


async def test_sdk_server_and_training_lay_out_the_same_tokens(
    model: RefragModel, tmp_path: Path
) -> None:
    sdk = token_ids((await sdk_plan(model, tmp_path)).placements)

    messages: list[dict[str, object]] = [{"role": "system", "content": SYSTEM}]
    messages += [{"role": role, "content": text} for role, text in TURNS]
    messages += [
        {"role": "tool", "tool_call_id": "call_0", "content": NOTE},
        {"role": "document", "content": DOCUMENT},
        {"role": "user", "content": QUESTION},
    ]
    server = token_ids(server_plan(model, messages).placements)

    task = TaskExample(
        task="memory_qa",
        seed=0,
        segments=(
            Segment("system", SYSTEM),
            *(Segment(role, text) for role, text in TURNS),  # type: ignore[arg-type]
            Segment("tool_output", NOTE),
            Segment("document", DOCUMENT),
        ),
        question=QUESTION,
        answer="harbor42",
        references=("harbor42",),
    )
    example, _ = layout_task(
        task, model.tokenizer, k=model.k, template=model.template, expand=EVERY_CHUNK
    )
    training = token_ids(example.prefix)

    assert sdk == server == training
    t = REFRAG_TEMPLATE
    rendered = (
        t.render(SegmentKind.SYSTEM, SYSTEM)
        + "".join(t.render(SegmentKind(role), text) for role, text in TURNS)
        + t.render(SegmentKind.TOOL_OUTPUT, NOTE)
        + t.render(SegmentKind.DOCUMENT, DOCUMENT)
        + t.question(QUESTION)
    )
    assert sdk == model.tokenizer.encode(rendered, allow_special=True)


async def test_a_tool_loops_second_step_lays_out_alike(model: RefragModel, tmp_path: Path) -> None:
    """The tools preamble, the question, then the call and its output: the SDK's tool loop,
    the server, and training's answer-from-the-output task."""
    weather = TRAIN_TOOLS[0].tool
    engine = ScriptedEngine(model, [ScriptedEngine.call(weather.name, city="Oslo"), "Sunny."])
    question = "What is the weather in Oslo?"
    async with Agent.open(engine=engine, memory=tmp_path / "memory", budget=EVERYTHING) as agent:
        session = agent.session(tenant="acme", session="tools")
        await session.add_system(SYSTEM)
        await session.respond(question, tools=[weather])
        stored = await session.timeline()
    call, output = (s for s in stored if s.kind in (SegmentKind.TOOL_CALL, SegmentKind.TOOL_OUTPUT))
    arguments = json.dumps(json.loads(call.text)["arguments"])
    messages: list[dict[str, object]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": weather.name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": output.text},
    ]
    server = server_plan(model, messages, tools=[weather.schema()])
    task = TaskExample(
        task="tool_call",
        seed=0,
        segments=(Segment("system", SYSTEM),),
        question=question,
        answer="Sunny.",
        references=("Sunny.",),
        tools=(weather.name,),
        exchange=(Segment("tool_call", call.text), Segment("tool_output", output.text)),
    )
    example, _ = layout_task(
        task, model.tokenizer, k=model.k, template=model.template, expand=EVERY_CHUNK
    )
    sdk = token_ids(engine.plans[1].placements)
    assert sdk == token_ids(server.placements) == token_ids(example.prefix)
    t = REFRAG_TEMPLATE
    closing = (
        t.render(SegmentKind.USER, question)
        + t.render(SegmentKind.TOOL_CALL, call.text)
        + t.render(SegmentKind.TOOL_OUTPUT, output.text)
        + t.generation_prompt
    )
    assert model.tokenizer.decode(sdk).endswith(closing)


async def test_the_same_openai_messages_in_a_session_and_on_the_server(
    model: RefragModel, tmp_path: Path
) -> None:
    """A message list written with ``Session.add_messages`` and the same list sent to the
    server, with the question after it: one prompt."""
    call = {
        "id": "c7",
        "type": "function",
        "function": {"name": "get_order", "arguments": '{"order_id": 7}'},
    }
    history: list[dict[str, object]] = [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Order 7?"}, {"type": "text", "text": "Thanks."}],
        },
        {"role": "assistant", "content": "Let me look.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c7", "content": '{"status": "shipped"}'},
        {"role": "assistant", "content": "Order 7 has shipped."},
    ]
    engine = ScriptedEngine(model, ["Monday."])
    async with Agent.open(engine=engine, memory=tmp_path / "memory", budget=EVERYTHING) as agent:
        session = agent.session(tenant="acme", session="messages")
        await session.add_messages(history)
        await session.respond("When did it ship?")
    server = server_plan(model, [*history, {"role": "user", "content": "When did it ship?"}])
    assert token_ids(engine.plans[0].placements) == token_ids(server.placements)
