from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from refrag_agent.agent import Agent
from refrag_agent.demo import build_model
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel


@pytest.fixture(scope="session")
def agent_model(minilm: ChunkEncoder) -> RefragModel:
    """The same seeded random tiny model the default falls back to, built once."""
    return build_model(encoder=minilm)


@pytest.fixture
async def agent(agent_model: RefragModel, tmp_path: Path) -> AsyncIterator[Agent]:
    async with Agent.open(model=agent_model, memory=tmp_path / "memory") as opened:
        yield opened
