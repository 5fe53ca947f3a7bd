from __future__ import annotations

from pathlib import Path

import pytest

import refrag_agent
from refrag_agent.budget import Budget
from refrag_agent.cli import main
from refrag_agent.demo import run_demo
from refrag_agent.demo_script import QUESTIONS, script
from refrag_agent.model.base_decoder import base_decoder_dir
from refrag_agent.model.tokenizer import HFTokenizer
from refrag_agent.template import CHATML_TEMPLATE
from refrag_agent.training.tasks import NOT_MENTIONED

SMOLLM2_WINDOW = 8_192
TINY = Path(refrag_agent.__file__).parent / "bundled" / "tiny"


def test_every_answer_is_told_and_the_unanswerable_one_is_not() -> None:
    texts = [line.text for line in script()]
    unanswerable = [q for q in QUESTIONS if q.expected == NOT_MENTIONED]
    assert len(QUESTIONS) == 5 and len(unanswerable) == 1
    assert not any(NOT_MENTIONED in t.lower() or "physio" in t.lower() for t in texts)
    for q in QUESTIONS:
        if q.expected == NOT_MENTIONED:
            continue
        told = [i for i, t in enumerate(texts) if q.expected in t]
        assert told, q
        if q.replaces is not None:  # the update comes after the value it replaces
            replaced = [i for i, t in enumerate(texts) if q.replaces in t]
            assert replaced and max(replaced) < min(told), q


def test_the_first_fact_is_beyond_smollm2_window_as_tokens() -> None:
    tokenizer = HFTokenizer.load(base_decoder_dir())
    lines = script()
    sizes = [
        len(tokenizer.encode(CHATML_TEMPLATE.render(line.kind, line.text), allow_special=True))
        for line in lines
    ]
    assert sum(sizes) > 9_000
    first = QUESTIONS[0]
    told = next(i for i, line in enumerate(lines) if first.expected in line.text)
    assert told < 2  # in the opening turns
    assert sum(sizes[told + 1 :]) > SMOLLM2_WINDOW  # what follows it alone fills the window


async def test_demo_runs_end_to_end_on_the_tiny_model(tmp_path: Path) -> None:
    report = await run_demo(
        model=TINY, memory=tmp_path / "mem", budget=Budget(p=0.1), max_new_tokens=8
    )
    assert [r.question for r in report.rows] == [q.text for q in QUESTIONS]
    assert report.segments_written == len(script())
    for row in report.rows:
        assert row.positions_fed <= report.window < row.tokens_held
        assert row.chunks_compressed > 0
    assert report.full is not None and report.full.segments_dropped > 0
    assert report.full.positions <= report.window
    out = report.format()
    assert f"/{len(QUESTIONS)} answered as expected" in out and "full tokens" in out


def test_cli_reports_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--p", "1.5"]) == 2
    assert "error:" in capsys.readouterr().err
