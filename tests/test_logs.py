"""The library prints nothing unless the application configures logging."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from refrag_agent.logs import get_logger

# A user's script: the bundled model, a memory folder, one turn, one answer, the timeline.
SCRIPT = """
import asyncio, logging, sys
from refrag_agent import Agent

if sys.argv[2] == "logging":
    logging.basicConfig(level=logging.INFO)

async def main() -> None:
    async with Agent.open(model=None, memory=sys.argv[1]) as agent:
        chat = agent.session(tenant="t", session="s")
        await chat.add_turn("user", "My locker code is 4821.")
        await chat.respond("What is my locker code?", max_new_tokens=4)
        assert len(await chat.timeline()) == 3

asyncio.run(main())
"""


def _run_script(memory: Path, mode: str) -> subprocess.CompletedProcess[str]:
    # The user's environment: none of the offline switches the test suite sets.
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(memory), mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_a_script_using_the_library_prints_nothing(tmp_path: Path) -> None:
    done = _run_script(tmp_path / "memory", "silent")
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_a_script_that_configures_logging_sees_the_events(tmp_path: Path) -> None:
    done = _run_script(tmp_path / "memory", "logging")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "INFO:refrag_agent.memory.store:memory.opened" in done.stderr
    assert "INFO:refrag_agent.reply:refrag.plan tenant='t' session='s'" in done.stderr


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """structlog as a fresh process has it (the CLI tests configure it)."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def test_without_structlog_events_go_to_stdlib_logging(
    unconfigured: None, caplog: pytest.LogCaptureFixture
) -> None:
    log = get_logger("refrag_agent.example")
    with caplog.at_level(logging.INFO, logger="refrag_agent"):
        log.debug("hidden.event")
        log.info("shown.event", n=3, path="/x")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed.event")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("refrag_agent.example", logging.INFO, "shown.event n=3 path='/x'"),
        ("refrag_agent.example", logging.ERROR, "failed.event"),
    ]
    assert caplog.records[1].exc_info is not None
    assert caplog.records[0].filename == Path(__file__).name


def test_a_configured_structlog_gets_the_events(unconfigured: None) -> None:
    with capture_logs() as events:
        get_logger("refrag_agent.example").warning("some.event", n=1)
    assert events == [{"event": "some.event", "n": 1, "log_level": "warning"}]
