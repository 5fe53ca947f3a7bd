"""The engines package: one protocol for every engine, and the scripted engine for tests."""

from __future__ import annotations

import httpx
import pytest

from refrag_agent import engines
from refrag_agent.engines import (
    Engine,
    LocalEngine,
    RemoteEngine,
    ScriptedEngine,
    VLLMEngine,
    open_engine,
)
from refrag_agent.errors import DecoderUnavailable, InvalidInput
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.app import RefragServer

FACT = "The locker code is 4821 and the meeting room is Birch. " * 4


def test_all_is_sorted_and_importable() -> None:
    # ruff's order (RUF022): constants first, then the rest, each alphabetical.
    assert engines.__all__ == sorted(engines.__all__, key=lambda n: (not n.isupper(), n))
    for name in engines.__all__:
        assert getattr(engines, name) is not None


async def test_every_engine_has_the_protocol(model: RefragModel, minilm: ChunkEncoder) -> None:
    server = RefragServer(model, name="tiny")
    try:
        remote = await RemoteEngine.connect(
            "http://serve.test", transport=httpx.ASGITransport(app=server.app), encoder=minilm
        )
    finally:
        server.close()
    made: list[Engine] = [
        LocalEngine(model),
        remote,
        VLLMEngine(model, "http://vllm.test", served_model="tiny"),
        ScriptedEngine(model, []),
    ]
    for engine in made:
        assert isinstance(engine, Engine)
        await engine.aclose()
    assert not isinstance(model, Engine)


def plan_of(model: RefragModel) -> PlacementPlan:
    chunks = model.chunk(FACT)
    vectors = model.encode(chunks)
    return model.plan(["<|user|>", (chunks, vectors, {0}), "Which room?<|end|><|assistant|>"])


async def test_scripted_engine_records_each_call(model: RefragModel) -> None:
    engine = ScriptedEngine(
        model, ["It is Birch.", lambda prompt: f"{len(prompt or '')} characters"]
    )
    plan = plan_of(model)
    params = SamplingParams(max_new_tokens=5)
    answer = await engine.generate(plan, params)
    assert answer.text == "It is Birch." and answer.finish_reason == "stop"
    assert answer.token_ids == model.tokenizer.encode("It is Birch.")
    assert answer.prompt_positions == plan.n_positions
    assert engine.plans == [plan] and engine.params == [params]
    (prompt,) = engine.prompts
    # The expanded first chunk is read as text, the rest as compressed positions.
    assert prompt.startswith("<|user|>The locker code [compressed: 16 tokens]")
    assert prompt.endswith("[compressed: 12 tokens]Which room?<|end|><|assistant|>")
    assert (await engine.generate(plan, params)).text == f"{len(prompt)} characters"
    assert engine.remaining == 0


async def test_scripted_engine_streams_words(model: RefragModel) -> None:
    engine = ScriptedEngine(model, ["Room Birch, level 2."])
    items = [item async for item in engine.stream(plan_of(model), SamplingParams())]
    *pieces, final = items
    assert all(isinstance(p, TokenEvent) for p in pieces)
    assert [p.text for p in pieces] == ["Room", " Birch,", " level", " 2."]
    assert isinstance(final, Generation) and final.text == "Room Birch, level 2."


async def test_scripted_engine_failures(model: RefragModel) -> None:
    engine = ScriptedEngine(model, [ConnectionError("down")])
    plan = plan_of(model)
    with pytest.raises(ConnectionError):
        await engine.generate(plan, SamplingParams())
    with pytest.raises(InvalidInput, match="ran out"):
        await engine.generate(plan, SamplingParams())
    await engine.aclose()
    with pytest.raises(DecoderUnavailable):
        await engine.generate(plan, SamplingParams())


async def test_open_engine_takes_a_model_or_an_engine(model: RefragModel) -> None:
    scripted = ScriptedEngine(model, [])
    assert await open_engine(engine=scripted) is scripted
    assert await open_engine(model, engine=scripted) is scripted  # the engine's own model
    with pytest.raises(InvalidInput, match="not both"):
        await open_engine("./checkpoint", engine=scripted)
    with pytest.raises(InvalidInput, match="engine="):
        await open_engine(scripted)
    local = await open_engine(model)
    assert isinstance(local, LocalEngine) and local.model is model
