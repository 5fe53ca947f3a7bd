"""The correctness anchor: expanding every chunk equals feeding the plain tokens."""

from __future__ import annotations

import pytest
import torch

from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import FAMILIES

from .conftest import LONG_TEXT

PREFIX, SUFFIX = "<|user|>", "What is the locker code?<|assistant|>"


def _plain_ids(model: RefragModel) -> torch.Tensor:
    ids = (
        model.tokenizer.encode(PREFIX, allow_special=True)
        + model.tokenizer.encode(LONG_TEXT)
        + model.tokenizer.encode(SUFFIX, allow_special=True)
    )
    return torch.tensor([ids])


@pytest.mark.parametrize("family", FAMILIES)
def test_full_expansion_matches_plain_tokens(models: dict[str, RefragModel], family: str) -> None:
    model = models[family]
    chunks = model.chunk(LONG_TEXT)
    plan = model.plan([PREFIX, (chunks, model.encode(chunks), set(range(len(chunks)))), SUFFIX])
    ids = _plain_ids(model)
    assert plan.n_positions == ids.shape[1] and plan.n_compressed == 0

    with torch.inference_mode():
        reference = model.decoder(input_ids=ids).logits  # (1, T, V)
    torch.testing.assert_close(model.logits([plan]), reference, atol=1e-5, rtol=1e-4)

    ours = model.generate([plan], SamplingParams(max_new_tokens=12))[0]
    hf = model.decoder.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=12,
        do_sample=False,
        pad_token_id=model.tokenizer.pad_id,
        eos_token_id=model.tokenizer.eos_id,
    )[0, ids.shape[1] :].tolist()
    eos = model.tokenizer.eos_id
    assert ours.token_ids == [t for t in hf if t != eos][: len(ours.token_ids)]
    assert len(ours.token_ids) == (hf.index(eos) if eos in hf else 12)
