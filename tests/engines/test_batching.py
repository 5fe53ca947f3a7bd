"""DecodeBatch: rows that join mid-flight and leave early decode as they would alone."""

from __future__ import annotations

import time

import torch

from refrag_agent.engines.batching import DecodeBatch, Job, JobEvent, JobFailed
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams
from refrag_agent.model.refrag import RefragModel

FACTS = (
    "My locker code is 4821. The meeting moved to Thursday at noon, room 12B. "
    "Order 7731 shipped on Monday; the tracking number is ZX-991-AQ."
)


def plans(model: RefragModel) -> list[PlacementPlan]:
    chunks = model.chunk(FACTS)
    vectors = model.encode(chunks)
    return [
        model.plan(["<|user|>hi<|end|><|assistant|>"]),
        model.plan(["<|user|>", (chunks, vectors, {1}), "Which room?<|end|><|assistant|>"]),
        model.plan([f"<|user|>{FACTS}<|end|><|assistant|>"]),
        model.plan(["<|user|>", (chunks, vectors, set()), "code?<|end|><|assistant|>"]),
    ]


def test_rows_join_and_leave_as_if_alone(model: RefragModel) -> None:
    todo = plans(model)
    params = [SamplingParams(max_new_tokens=n) for n in (9, 4, 3, 12)]
    expected = [model.generate([p], s)[0].token_ids for p, s in zip(todo, params, strict=True)]
    finals: dict[int, Generation] = {}

    def job(i: int) -> Job:
        def emit(event: JobEvent) -> None:
            if isinstance(event, Generation):
                finals[i] = event

        return Job(todo[i], params[i], emit, ignore_eos=True)

    batch = DecodeBatch(model)
    batch.admit([job(0), job(1)])
    widths = []
    for step in range(40):
        if step == 2:
            batch.admit([job(2)])  # joins a running batch: the caches are merged
        if step == 5:
            batch.admit([job(3)])
        batch.prune(time.perf_counter())
        if not batch.rows:
            break
        assert batch.cache is not None
        widths.append(batch.cache.length)
        batch.step()
    assert [finals[i].token_ids for i in range(4)] == expected
    # rows left early: the cache shrank back below its widest (leading columns cut)
    assert min(widths[widths.index(max(widths)) :]) < max(widths)


def test_a_step_appends_to_the_cache_in_place(model: RefragModel) -> None:
    """Each layer's keys sit at the front of a buffer with room: a step writes one column
    instead of copying the cache (the first step after a prefill or merge makes the room)."""
    params = SamplingParams(max_new_tokens=20)
    batch = DecodeBatch(model)
    batch.admit([Job(plan, params, lambda event: None, ignore_eos=True) for plan in plans(model)])
    batch.step()
    assert batch.cache is not None
    layers = list(batch.cache.past.layers)
    where = [layer.keys.data_ptr() for layer in layers]
    width = batch.cache.length
    for _ in range(5):
        batch.step()
    assert batch.cache.length == width + 5
    assert all(layer.keys.shape[-2] == width + 5 for layer in layers)
    assert [layer.keys.data_ptr() for layer in layers] == where


def test_batched_prefill_matches_single_within_rounding(model: RefragModel) -> None:
    todo = plans(model)
    together = model.logits(todo)[:, -1]  # (B, V), left-padded
    alone = torch.stack([model.logits([p])[0, -1] for p in todo])
    assert (together - alone).abs().max() < 1e-4
    assert torch.equal(together.argmax(-1), alone.argmax(-1))


def test_a_row_whose_logits_overflow_fails_alone(model: RefragModel) -> None:
    """Embeddings near float32's limit (the server refuses them; a plan built in-process
    can hold them) overflow the projector: that row fails, the others answer."""
    chunks = model.chunk(FACTS)
    huge = torch.full((len(chunks), model.config.projector.in_dim), 3e38)
    bad = model.plan(["<|user|>", (chunks, huge, set()), "code?<|end|><|assistant|>"])
    sampled = SamplingParams(max_new_tokens=4, temperature=1.0, seed=0)
    good = plans(model)
    todo = [(bad, sampled), (good[0], sampled), (good[1], SamplingParams(max_new_tokens=4))]
    events: list[list[JobEvent]] = [[] for _ in todo]
    jobs = [Job(plan, params, out.append) for (plan, params), out in zip(todo, events, strict=True)]
    batch = DecodeBatch(model)
    batch.admit(jobs)
    batch.prune(time.perf_counter())  # as the scheduler does after every call
    while batch.rows:
        batch.step()
        batch.prune(time.perf_counter())
    assert events[0] == [JobFailed("error", "sampling failed: the logits are not finite")]
    assert all(isinstance(events[i][-1], Generation) for i in (1, 2))
