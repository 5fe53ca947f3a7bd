"""One run of the smoke preset's whole chain, shared by the stage tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from refrag_agent.training import STAGES, get_preset, train

try:  # the rl stage adapts the policies package's GRPO trainer
    from refrag_agent.policies import train_grpo  # noqa: F401

    HAS_RL = True
except (ImportError, AttributeError):
    HAS_RL = False


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("chain")
    stages = [s for s in STAGES if HAS_RL or s != "rl"]
    summary = train(get_preset("smoke"), stages=stages, resume=False, out_dir=out, progress=False)
    return out, summary
