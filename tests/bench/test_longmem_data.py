"""The LoCoMo and LongMemEval loaders on the generated samples and on malformed files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from refrag_agent.bench.longmem_data import load_longmem
from refrag_agent.errors import InvalidInput

FIXTURES = Path(__file__).parent / "fixtures"
LOCOMO = FIXTURES / "longmem_locomo_sample.json"
LONGMEMEVAL = FIXTURES / "longmem_longmemeval_sample.json"


def test_locomo_sample() -> None:
    conversations = load_longmem(LOCOMO, "locomo")
    assert [len(c.questions) for c in conversations] == [8, 7]
    first = conversations[0]
    assert first.turns[0].speaker == "Nadia" and first.turns[0].role == "user"
    assert first.turns[1].role == "assistant"  # speaker_b
    assert first.turns[0].rendered().startswith("[10:05 am on 3 March, 2024] Nadia: ")
    assert "shares a photo" in first.turns[9].text  # blip_caption kept
    categories = {q.category for c in conversations for q in c.questions}
    assert {"1 multi-hop", "2 temporal", "3 open-domain", "4 single-hop", "5 adversarial"} <= (
        categories
    )
    adversarial = [q for q in first.questions if q.unanswerable]
    assert len(adversarial) == 1 and adversarial[0].answer == ""


def test_longmemeval_sample() -> None:
    conversations = load_longmem(LONGMEMEVAL, "longmemeval")
    assert len(conversations) == 4
    assert all(len(c.questions) == 1 for c in conversations)
    abstention = conversations[-1].questions[0]
    assert abstention.unanswerable and abstention.category == "abstention"
    first = conversations[0]
    assert first.questions[0].asked().startswith("[2024/06/02 (Sun) 10:00] ")
    assert first.questions[0].evidence == ("e1:0",)  # the has_answer turn
    assert first.turns[2].metadata()["session"] == "e1"


def test_limit_keeps_the_first_questions() -> None:
    conversations = load_longmem(LOCOMO, "locomo", limit=10)
    assert [len(c.questions) for c in conversations] == [8, 2]
    assert len(load_longmem(LONGMEMEVAL, "longmemeval", limit=2)) == 2


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such data file") as missing:
        load_longmem(tmp_path / "absent.json", "locomo")
    assert "fix" in missing.value.context
    with pytest.raises(InvalidInput, match="unknown long-memory format"):
        load_longmem(LOCOMO, "squad")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not JSON"):
        load_longmem(bad, "locomo")
    with pytest.raises(InvalidInput, match="non-empty JSON list"):
        load_longmem(_write(tmp_path, {"a": 1}), "locomo")
    # The wrong format: a LoCoMo file read as LongMemEval names the item and the field.
    with pytest.raises(InvalidInput, match="item 0 has no 'question_id'") as wrong:
        load_longmem(LOCOMO, "longmemeval")
    assert "--format locomo" in wrong.value.context["fix"]
    item = json.loads(LOCOMO.read_text(encoding="utf-8"))[0]
    item["qa"][0]["category"] = 9
    with pytest.raises(InvalidInput, match="unknown category"):
        load_longmem(_write(tmp_path, [item]), "locomo")
    item = json.loads(LONGMEMEVAL.read_text(encoding="utf-8"))[0]
    item["haystack_dates"] = item["haystack_dates"][:1]
    with pytest.raises(InvalidInput, match="differ in length"):
        load_longmem(_write(tmp_path, [item]), "longmemeval")
    item = json.loads(LONGMEMEVAL.read_text(encoding="utf-8"))[0]
    item["haystack_sessions"][0][0]["role"] = "system"
    with pytest.raises(InvalidInput, match="role must be"):
        load_longmem(_write(tmp_path, [item]), "longmemeval")
