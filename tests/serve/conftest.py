"""A tiny random REFRAG model served in-process; servers are closed after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from refrag_agent.memory import MemoryStore
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.serve.app import RefragServer
from refrag_agent.serve.limits import ServeLimits

from .util import NAME


@pytest.fixture(scope="session")
def serve_model(byte_tokenizer: TiktokenTokenizer, minilm: ChunkEncoder) -> RefragModel:
    decoder = random_decoder(
        "llama", vocab_size=byte_tokenizer.vocab_size, hidden_size=64, n_layers=2, seed=3
    )
    return RefragModel.create(tokenizer=byte_tokenizer, decoder=decoder, encoder=minilm, seed=3)


MakeServer = Callable[..., RefragServer]


@pytest.fixture
def make_server(serve_model: RefragModel) -> Iterator[MakeServer]:
    """``make_server(api_key=..., memory=..., **limits)``; every server is closed after."""
    made: list[RefragServer] = []

    def make(
        *, api_key: str | None = None, memory: MemoryStore | None = None, **limits: Any
    ) -> RefragServer:
        server = RefragServer(
            serve_model, name=NAME, limits=ServeLimits(**limits), api_key=api_key, memory=memory
        )
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()
