from __future__ import annotations

import pytest
import torch

from refrag_agent import InvalidInput
from refrag_agent.model.assembly import CompressedChunk, PlacementPlan, TokenSpan
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel

from .conftest import LONG_TEXT

WHERE = {
    "start": lambda c, e: [(c, e, set()), "<|user|>Question?<|assistant|>"],
    "middle": lambda c, e: ["<|system|>Notes:", (c, e, {1}), "<|user|>Question?<|assistant|>"],
    "end": lambda c, e: ["<|user|>Question?", (c, e, {0})],
}


@pytest.mark.parametrize("where", sorted(WHERE))
def test_compressed_chunk_anywhere(llama: RefragModel, where: str) -> None:
    chunks = llama.chunk(LONG_TEXT)
    emb = llama.encode(chunks)
    plan = llama.plan(WHERE[where](chunks, emb))
    batch = llama.assemble([plan])
    assert batch.inputs_embeds.shape == (1, plan.n_positions, llama.shape.hidden_size)
    # One position per element, compressed chunks included.
    assert batch.position_ids[0].tolist() == list(range(plan.n_positions))
    assert batch.attention_mask.all()
    template = sum(len(p.token_ids) for p in plan.placements if isinstance(p, TokenSpan))
    assert plan.n_tokens_held == template + sum(c.n_tokens for c in chunks)

    projected = llama.projector(emb)
    table = llama.decoder.get_input_embeddings()
    slot = 0
    with torch.no_grad():
        for p in plan.placements:
            if isinstance(p, CompressedChunk):
                torch.testing.assert_close(batch.inputs_embeds[0, slot], projected[p.row])
                slot += 1
            else:
                n = len(p.token_ids)
                expected = table(torch.tensor(p.token_ids))
                torch.testing.assert_close(batch.inputs_embeds[0, slot : slot + n], expected)
                slot += n
    assert torch.isfinite(llama.logits([plan])).all()


def test_batch_equals_one_by_one(llama: RefragModel) -> None:
    chunks = llama.chunk(LONG_TEXT)
    emb = llama.encode(chunks)
    plans = [
        llama.plan(["<|user|>", (chunks, emb, {0, 3}), "Code?<|assistant|>"]),
        llama.plan(["Hello there<|assistant|>"]),
        llama.plan([(chunks[:2], emb[:2], set()), "<|assistant|>"]),
    ]
    batch = llama.assemble(plans)
    width = max(p.n_positions for p in plans)
    assert batch.inputs_embeds.shape[:2] == (3, width)
    for row, plan in enumerate(plans):
        pad = width - plan.n_positions
        assert batch.attention_mask[row].tolist() == [0] * pad + [1] * plan.n_positions
        assert batch.position_ids[row, pad:].tolist() == list(range(plan.n_positions))

    together = llama.logits(plans)[:, -1]  # last position of every (left-padded) row
    for row, plan in enumerate(plans):
        alone = llama.logits([plan])[0, -1]
        torch.testing.assert_close(together[row], alone, atol=1e-4, rtol=1e-4)

    params = SamplingParams(max_new_tokens=10)
    batched = llama.generate(plans, params)
    for row, plan in enumerate(plans):
        assert batched[row].token_ids == llama.generate([plan], params)[0].token_ids


def test_bad_plans(llama: RefragModel) -> None:
    with pytest.raises(InvalidInput):
        PlacementPlan((TokenSpan(()),))
    with pytest.raises(InvalidInput):
        PlacementPlan((CompressedChunk(0),), chunk_embeddings=None)
    with pytest.raises(InvalidInput):
        llama.assemble([])
    chunks = llama.chunk(LONG_TEXT)
    with pytest.raises(InvalidInput):
        llama.plan([(chunks, torch.zeros(1, 384), set())])
    with pytest.raises(InvalidInput):
        llama.generate([llama.plan(["x" * 5000])], SamplingParams(max_new_tokens=1))
