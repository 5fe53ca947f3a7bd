"""Tiny random REFRAG models for engine tests, built once."""

from __future__ import annotations

import pytest

from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer
from tests.conftest import random_agent_model


@pytest.fixture(scope="session")
def model(byte_tokenizer: TiktokenTokenizer, minilm: ChunkEncoder) -> RefragModel:
    decoder = random_decoder(
        "llama", vocab_size=byte_tokenizer.vocab_size, hidden_size=64, n_layers=2, seed=3
    )
    return RefragModel.create(tokenizer=byte_tokenizer, decoder=decoder, encoder=minilm, seed=3)


@pytest.fixture(scope="session")
def agent_model(minilm: ChunkEncoder) -> RefragModel:
    """The demo's seeded random model (4 layers, width 256): its greedy answers run to
    their token limit instead of stopping at a template token."""
    return random_agent_model(minilm)
