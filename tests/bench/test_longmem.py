"""bench longmem end to end on the generated samples, with the tiny bundled model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refrag_agent.bench.longmem import ARMS, run_longmem, summarize
from refrag_agent.bench.longmem_data import load_longmem
from refrag_agent.cli import main
from refrag_agent.engines import TINY_MODEL, resolve_model
from refrag_agent.memory import MemoryStore
from refrag_agent.model.refrag import RefragModel
from refrag_agent.timeline import Scope

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def tiny() -> RefragModel:
    return resolve_model(TINY_MODEL)


async def test_replay_and_arms_on_longmemeval(tiny: RefragModel, tmp_path: Path) -> None:
    conversations = load_longmem(FIXTURES / "longmem_longmemeval_sample.json", "longmemeval")
    ticks: list[int] = []
    records = await run_longmem(
        conversations, tiny, tmp_path / "memory", max_new_tokens=4, progress=ticks.append
    )
    assert len(records) == len(ticks) == 4
    for record in records:
        arms = record["arms"]
        assert set(arms) == set(ARMS)
        refrag = arms["refrag"]["positions_fed"]
        # Equal cost: the baselines never feed more positions than REFRAG did.
        assert arms["truncation"]["positions_fed"] <= refrag
        assert arms["rag"]["positions_fed"] <= refrag
        assert arms["none"]["positions_fed"] < arms["rag"]["positions_fed"]
        assert arms["none"]["turns_fed"] == 0
        assert arms["rag"]["turns_fed"] == arms["rag"]["k"] >= 1
    # Each conversation's session holds its turns and nothing the questions wrote.
    store = await MemoryStore.open(tmp_path / "memory", encoder=tiny.encoder)
    try:
        for n, conversation in enumerate(conversations):
            scope = Scope(tenant="longmem", session=f"c{n}-{conversation.cid}")
            timeline = await store.timeline(scope)
            assert [s.text for s in timeline] == [t.rendered() for t in conversation.turns]
            assert timeline[0].metadata["date"] == conversation.turns[0].date
    finally:
        await store.aclose()
    summary = summarize(records)
    assert set(summary["rows"]) == set(ARMS)
    assert "abstention" in summary["by_category"]


def test_cli_on_locomo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "longmem.json"
    data = FIXTURES / "longmem_locomo_sample.json"
    args = ["bench", "longmem", "--data", str(data), "--format", "locomo", "--limit", "3"]
    code = main([*args, "--model", str(TINY_MODEL), "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "TTFT p50" in printed and "no LLM judge" in printed
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["data"]["questions"] == 3
    assert len(payload["data"]["sha256"]) == 64
    assert set(payload["rows"]) == set(ARMS)
    assert out.with_suffix(".png").stat().st_size > 0


def test_cli_names_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "longmem", "--data", str(tmp_path / "x.json"), "--format", "longmemeval"])
    assert code == 2
    assert "no such data file" in capsys.readouterr().err
