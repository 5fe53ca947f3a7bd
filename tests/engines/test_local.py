"""LocalEngine: concurrent calls of one agent are decoded in shared batches, and answer
what the same calls answer one at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from refrag_agent.agent import Agent, Session
from refrag_agent.engines import BatchLimits, LocalEngine
from refrag_agent.engines.scheduler import JobError
from refrag_agent.errors import DecoderUnavailable, InvalidInput
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel

N = 6  # sessions answering at once


async def wait_for(engine: LocalEngine, done: Callable[[dict[str, Any]], bool]) -> None:
    """Until the engine's counters satisfy ``done`` (a bounded wait, not a timing)."""
    for _ in range(1000):
        if done(engine.scheduler.snapshot()):
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"engine state never reached: {engine.scheduler.snapshot()}")


async def remembering(agent: Agent, session: str, i: int) -> Session:
    """A session whose memory (a document, a turn) depends on ``i`` only."""
    chat = agent.session(tenant="acme", session=session)
    notes = " ".join(f"Fact {j} is {j * 7 % 13}." for j in range(1 + 4 * i))
    await chat.add_document(notes, source="notes.md")
    await chat.add_turn("user", f"My locker code is {4821 + i}.")
    return chat


async def test_concurrent_sessions_match_sequential_calls_in_shared_batches(
    agent_model: RefragModel, tmp_path: Path
) -> None:
    engine = LocalEngine(agent_model)
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        one_by_one = [await remembering(agent, f"seq-{i}", i) for i in range(N)]
        together = [await remembering(agent, f"con-{i}", i) for i in range(N)]
        asks = [(f"What is fact {i}?", 6 + 3 * i) for i in range(N)]
        sequential = [
            await chat.respond(q, max_new_tokens=n)
            for chat, (q, n) in zip(one_by_one, asks, strict=True)
        ]
        alone = engine.scheduler.snapshot()
        concurrent = await asyncio.gather(
            *(
                chat.respond(q, max_new_tokens=n)
                for chat, (q, n) in zip(together, asks, strict=True)
            )
        )
    shared = engine.scheduler.snapshot()
    tokens = [r.usage.completion_tokens for r in sequential]
    assert tokens == [n for _, n in asks]  # every answer runs to its limit: rows leave apart
    for one, many in zip(sequential, concurrent, strict=True):
        assert many.text == one.text
        assert many.usage.completion_tokens == one.usage.completion_tokens
        assert many.plan.positions_fed == one.plan.positions_fed
    assert alone["max_rows"] == 1 and alone["prefills"] == N
    assert alone["steps"] == sum(n - 1 for n in tokens)  # one step per token after the first
    assert shared["max_rows"] > 1  # decoded together
    assert shared["prefills"] - alone["prefills"] < N  # prefilled together
    assert shared["steps"] - alone["steps"] < alone["steps"]  # the same tokens, fewer steps
    assert shared["served"] == 2 * N and shared["failed"] == shared["cancelled"] == 0


async def test_a_cancelled_call_frees_its_row(agent_model: RefragModel, tmp_path: Path) -> None:
    """One row only: the next call can run only once a cancelled call has left the batch."""
    engine = LocalEngine(agent_model, limits=BatchLimits(max_batch=1))
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        chat = await remembering(agent, "long", 0)
        # Greedy, this question's answer runs to its token limit: it is still decoding.
        task = asyncio.create_task(chat.respond("What is fact 0?", max_new_tokens=5000))
        await wait_for(engine, lambda s: s["decoding"] == 1 and s["steps"] > 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(engine, lambda s: s["cancelled"] == 1 and s["decoding"] == 0)

        plan = agent_model.plan(["<|user|>Tell me everything.<|end|><|assistant|>"])
        params = SamplingParams(max_new_tokens=5000)
        async with contextlib.aclosing(engine.stream(plan, params)) as events:
            async for event in events:
                assert isinstance(event, TokenEvent)
                break  # the caller leaves mid-stream
        await wait_for(engine, lambda s: s["cancelled"] == 2 and s["decoding"] == 0)
        reply = await chat.respond("What is fact 0?", max_new_tokens=3)
    assert reply.usage.completion_tokens == 3
    assert engine.scheduler.snapshot()["served"] == 1


async def test_close_finishes_calls_in_flight_then_refuses(agent_model: RefragModel) -> None:
    engine = LocalEngine(agent_model)
    plan = agent_model.plan(["<|user|>hello<|end|><|assistant|>"])
    call = asyncio.create_task(engine.generate(plan, SamplingParams(max_new_tokens=20)))
    await wait_for(engine, lambda s: s["decoding"] == 1)
    await engine.aclose()
    answer = await call
    assert isinstance(answer, Generation) and len(answer.token_ids) == 20
    with pytest.raises(DecoderUnavailable, match="closed"):
        await engine.generate(plan, SamplingParams())
    with pytest.raises(InvalidInput, match="does not fit"):
        await LocalEngine(agent_model).generate(plan, SamplingParams(max_new_tokens=10**6))


async def test_a_failed_call_raises_and_the_next_one_runs(model: RefragModel) -> None:
    """Embeddings near float32's limit overflow the projector: sampling that row fails."""
    engine = LocalEngine(model)
    chunks = model.chunk("The locker code is 4821. " * 4)
    huge = torch.full((len(chunks), model.config.projector.in_dim), 3e38)
    bad = model.plan(["<|user|>", (chunks, huge, set()), "code?<|end|><|assistant|>"])
    with pytest.raises(JobError, match="not finite"):
        await engine.generate(bad, SamplingParams(max_new_tokens=4, temperature=1.0, seed=0))
    good = model.plan(["<|user|>hi<|end|><|assistant|>"])
    answer = await engine.generate(good, SamplingParams(max_new_tokens=3))
    await engine.aclose()
    assert answer.finish_reason in ("eos", "length")
    assert engine.scheduler.snapshot()["failed"] == 1


@pytest.mark.parametrize(
    "limits",
    [
        {"max_batch": 0},
        {"max_batch": True},
        {"max_queue": -1},
        {"max_batch_positions": 2.5},
        {"max_request_s": 0.0},
    ],
)
def test_batch_limits_are_checked(limits: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        BatchLimits(**limits)
