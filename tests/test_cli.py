from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

import refrag_agent
from refrag_agent.cli import _parser, main
from refrag_agent.model.encoder import ChunkEncoder


def test_chat_then_inspect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = iter(["My locker code is 4821.", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    memory = str(tmp_path / "mem")
    assert main(["chat", "--memory", memory, "--tenant", "t", "--session", "s"]) == 0
    assert "positions fed" in capsys.readouterr().out
    monkeypatch.setattr(ChunkEncoder, "load", _must_not_load)
    assert main(["inspect", "--memory", memory, "--tenant", "t", "--session", "s"]) == 0
    out = capsys.readouterr().out
    assert "My locker code is 4821." in out and "1 recent plans" in out
    assert main(["inspect", "--memory", memory, "--tenant", "t", "--session", "other"]) == 2


def _must_not_load(*args: object, **kwargs: object) -> None:
    raise AssertionError("the encoder was loaded")


@pytest.mark.parametrize("made", [False, True])
def test_inspect_a_folder_without_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], made: bool
) -> None:
    folder = tmp_path / "no-memory-here"
    if made:
        folder.mkdir()
    monkeypatch.setattr(ChunkEncoder, "load", _must_not_load)
    assert main(["inspect", "--memory", str(folder)]) != 0
    assert f"no memory in {folder}" in capsys.readouterr().err
    assert folder.is_dir() == made
    assert not made or not any(folder.iterdir())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"refrag-agent {refrag_agent.__version__}\n"


def _commands(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from _commands(subparser, f"{name} {sub}")


def test_every_option_has_help_text() -> None:
    commands = dict(_commands(_parser(), "refrag-agent"))
    assert {"refrag-agent chat", "refrag-agent inspect"} <= set(commands)
    missing = [
        f"{name} {action.dest}"
        for name, parser in commands.items()
        for action in parser._actions
        if not action.help
    ]
    assert missing == []
