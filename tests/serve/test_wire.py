"""Plans and tensors survive the trip through JSON exactly."""

from __future__ import annotations

import json

import pytest
import torch

from refrag_agent.engines.wire import plan_from_wire, plan_to_wire, tensor_from_wire, tensor_to_wire
from refrag_agent.errors import InvalidInput
from refrag_agent.model.refrag import RefragModel

from .util import FACTS


def test_plan_round_trip(serve_model: RefragModel) -> None:
    chunks = serve_model.chunk(FACTS)
    vectors = serve_model.encode(chunks)
    plan = serve_model.plan(["<|user|>", (chunks, vectors, {0, 2}), "room?<|end|><|assistant|>"])
    back = plan_from_wire(
        json.loads(json.dumps(plan_to_wire(plan))),
        vocab_size=serve_model.shape.vocab_size,
        width=vectors.shape[1],
        max_rows=len(chunks),
        max_placements=1000,
    )
    assert back.placements == plan.placements
    assert back.chunk_embeddings is not None and plan.chunk_embeddings is not None
    assert torch.equal(back.chunk_embeddings, plan.chunk_embeddings)
    assert (back.n_positions, back.n_tokens_held) == (plan.n_positions, plan.n_tokens_held)


def test_tensor_checks_happen_before_decoding() -> None:
    tensor = torch.randn(3, 8)
    assert torch.equal(
        tensor_from_wire(tensor_to_wire(tensor), field="t", width=8, max_rows=3), tensor
    )
    with pytest.raises(InvalidInput, match="rows"):
        tensor_from_wire(tensor_to_wire(tensor), field="t", width=8, max_rows=2)
