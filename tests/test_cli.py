from __future__ import annotations

from pathlib import Path

import pytest

from refrag_agent.cli import main


def test_chat_then_inspect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = iter(["My locker code is 4821.", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    memory = str(tmp_path / "mem")
    assert main(["chat", "--memory", memory, "--tenant", "t", "--session", "s"]) == 0
    assert "positions fed" in capsys.readouterr().out
    assert main(["inspect", "--memory", memory, "--tenant", "t", "--session", "s"]) == 0
    out = capsys.readouterr().out
    assert "My locker code is 4821." in out and "1 recent plans" in out
    assert main(["inspect", "--memory", memory, "--tenant", "t", "--session", "other"]) == 2
