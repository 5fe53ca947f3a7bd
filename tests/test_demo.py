from __future__ import annotations

from pathlib import Path

import pytest

from refrag_agent.budget import Budget
from refrag_agent.cli import main
from refrag_agent.demo import QUESTIONS, run_demo


async def test_demo_answers_from_compressed_memory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = await run_demo(memory=tmp_path / "mem", budget=Budget(p=0.1), max_new_tokens=8)
    out = capsys.readouterr().out
    assert f"/{len(QUESTIONS)} answered as expected" in out
    assert [r.question for r in rows] == [q for q, _ in QUESTIONS]
    for row in rows:
        assert row.positions_fed < row.tokens_held / 2
        assert row.chunks_expanded > 0 and row.kv_compressed < row.kv_full


def test_cli_reports_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--p", "1.5"]) == 2
    assert "error:" in capsys.readouterr().err
