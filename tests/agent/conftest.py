from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from refrag_agent.agent import Agent
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from tests.conftest import random_agent_model


@pytest.fixture(scope="session")
def agent_model(minilm: ChunkEncoder) -> RefragModel:
    """A seeded random tiny model, built once."""
    return random_agent_model(minilm)


@pytest.fixture
async def agent(agent_model: RefragModel, tmp_path: Path) -> AsyncIterator[Agent]:
    async with Agent.open(model=agent_model, memory=tmp_path / "memory") as opened:
        yield opened
