"""One run of the smoke preset's whole chain, shared by the stage tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from refrag_agent.training import STAGES, get_preset, train


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("chain")
    summary = train(
        get_preset("smoke"), stages=list(STAGES), resume=False, out_dir=out, progress=False
    )
    return out, summary
