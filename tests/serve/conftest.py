"""A tiny random REFRAG model (and the bundled one) served in-process; servers are closed
after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from refrag_agent.budget import Budget
from refrag_agent.engines import TINY_MODEL, resolve_model
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


@pytest.fixture(scope="session")
def bundled_model() -> RefragModel:
    """The tiny trained model: it answers and calls tools in its template's format."""
    return resolve_model(TINY_MODEL)


MakeServer = Callable[..., RefragServer]


@pytest.fixture
def make_server(serve_model: RefragModel) -> Iterator[MakeServer]:
    """``make_server(api_key=..., memory=..., budget=..., model=..., **limits)``; every
    server is closed after. The model defaults to the tiny random one."""
    made: list[RefragServer] = []

    def make(
        *,
        api_key: str | None = None,
        memory: MemoryStore | None = None,
        budget: Budget | None = None,
        model: RefragModel | None = None,
        **limits: Any,
    ) -> RefragServer:
        server = RefragServer(
            model or serve_model,
            name=NAME,
            limits=ServeLimits(**limits),
            api_key=api_key,
            memory=memory,
            budget=budget,
        )
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()
