from __future__ import annotations

import asyncio

import pytest
import torch

from refrag_agent import InvalidInput
from refrag_agent.model.generation import (
    Generation,
    SamplingParams,
    TokenEvent,
    decode_step,
    prefill,
    sample_next,
)
from refrag_agent.model.refrag import RefragModel

from .conftest import LONG_TEXT


def _plan(model: RefragModel):  # type: ignore[no-untyped-def]
    chunks = model.chunk(LONG_TEXT)
    return model.plan(["<|user|>", (chunks, model.encode(chunks), {2}), "Code?<|assistant|>"])


def test_kv_cache_decoding_equals_full_recomputation(llama: RefragModel) -> None:
    plan = _plan(llama)
    with torch.inference_mode():
        batch = llama.assemble([plan])
    logits, cache = prefill(llama.decoder, batch)
    table = llama.decoder.get_input_embeddings()
    embeds = batch.inputs_embeds
    for _ in range(8):
        token = logits.argmax(-1)  # (1,)
        with torch.inference_mode():
            embeds = torch.cat([embeds, table(token)[:, None]], dim=1)  # (1, T+1, d)
            full = llama.decoder(inputs_embeds=embeds).logits[:, -1]
        logits = decode_step(llama.decoder, token, cache)
        torch.testing.assert_close(logits, full, atol=1e-4, rtol=1e-4)
    assert cache.length == plan.n_positions + 8


def test_sampling_options() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 4.9]])
    greedy = sample_next(logits, SamplingParams())
    assert greedy.tolist() == [1, 0]
    top1 = SamplingParams(temperature=1.0, top_k=1, seed=0)
    assert sample_next(logits, top1).tolist() == [1, 0]
    tiny_p = SamplingParams(temperature=1.0, top_p=1e-6, seed=0)
    assert sample_next(logits, tiny_p).tolist() == [1, 0]
    gen = torch.Generator().manual_seed(1)
    draws = {
        tuple(sample_next(logits, SamplingParams(temperature=5.0), gen).tolist()) for _ in range(50)
    }
    assert len(draws) > 1  # temperature really samples
    top2 = SamplingParams(temperature=50.0, top_k=2)
    picked = {int(sample_next(logits[:1], top2, gen)) for _ in range(100)}
    assert picked == {1, 3}


@pytest.mark.parametrize(
    "bad",
    [
        {"max_new_tokens": 0},
        {"temperature": -1.0},
        {"top_k": -1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"stop": ("",)},
    ],
)
def test_sampling_params_validation(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        SamplingParams(**bad)  # type: ignore[arg-type]


def test_seeded_sampling_is_reproducible(llama: RefragModel) -> None:
    params = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    plan = _plan(llama)
    assert (
        llama.generate([plan], params)[0].token_ids == llama.generate([plan], params)[0].token_ids
    )


def test_max_new_tokens_stop_strings_and_timings(llama: RefragModel) -> None:
    plan = _plan(llama)
    full = llama.generate([plan], SamplingParams(max_new_tokens=16))[0]
    assert full.finish_reason == "length" and len(full.token_ids) == 16
    assert full.ttft_s > 0 and len(full.token_times_s) == 15 and full.tokens_per_s > 0
    assert full.prompt_positions == plan.n_positions
    stop = full.text[4:6]
    cut = llama.generate([plan], SamplingParams(max_new_tokens=16, stop=(stop,)))[0]
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.find(stop)]


async def test_stream_does_not_block_the_loop(llama: RefragModel) -> None:
    plan = _plan(llama)
    params = SamplingParams(max_new_tokens=24)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    events = [e async for e in llama.stream(plan, params)]
    task.cancel()
    final = events[-1]
    assert isinstance(final, Generation)
    text = "".join(e.text for e in events if isinstance(e, TokenEvent))
    assert text == final.text == llama.generate([plan], params)[0].text
    assert ticks > len(events)  # the loop kept running while the decoder worked


async def test_leaving_a_stream_stops_the_decoder(llama: RefragModel) -> None:
    plan = _plan(llama)
    seen = 0
    async for event in llama.stream(plan, SamplingParams(max_new_tokens=500)):
        seen += isinstance(event, TokenEvent)
        if seen == 3:
            break
    assert seen == 3
