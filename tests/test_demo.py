from __future__ import annotations

from pathlib import Path

import pytest

from refrag_agent.budget import Budget
from refrag_agent.cli import main
from refrag_agent.demo import run_demo


async def test_demo_compresses_and_says_what_it_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = await run_demo(memory=tmp_path / "mem", budget=Budget(p=0.1), max_new_tokens=2)
    out = capsys.readouterr().out
    assert "random-weight" in out  # says plainly that no trained model ran
    assert len(rows) == 3
    for row in rows:
        assert row.positions_fed < row.tokens_held / 3
        assert row.chunks_expanded > 0 and row.kv_compressed < row.kv_full


def test_cli_reports_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--p", "1.5"]) == 2
    assert "error:" in capsys.readouterr().err
