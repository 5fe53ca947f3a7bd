"""The child process that runs a round's optimize (memory/compactor.py): one per store,
reused by every round, replaced when it dies or a round is cancelled, gone after close."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from refrag_agent.errors import StoreError
from refrag_agent.memory import HashEncoder, MemoryStore
from refrag_agent.memory.compactor import Compactor, OptimizeFailed
from refrag_agent.timeline import Scope

from .conftest import QUIET, make_segment

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc")


def _compactor(store: MemoryStore) -> Compactor:
    compactor = store._state.chunks._compactor
    assert compactor is not None
    return compactor


def _pipes() -> int:
    pipes = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            pipes += "pipe:" in os.readlink(fd)
        except OSError:  # closed while listing
            continue
    return pipes


def _assert_gone(pid: int) -> None:
    """``pid`` was this process's child and has been reaped (no zombie left)."""
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert not Path(f"/proc/{pid}").exists()


async def _ready_child(store: MemoryStore) -> int:
    """The pid of the store's child, once started and ready (the first round starts it)."""
    compactor = _compactor(store)
    for _ in range(3000):
        if await compactor.ready():
            assert compactor.pid is not None
            return compactor.pid
        await asyncio.sleep(0.01)
    raise AssertionError("the child did not start")


async def test_rounds_reuse_one_child_and_close_leaves_none(tmp_path: Path, scope: Scope) -> None:
    pipes = _pipes()
    async with MemoryStore.open(tmp_path / "store", encoder=HashEncoder(32), settings=QUIET) as s:
        await s.create_scope(scope)
        assert _compactor(s).pid is None  # started by the first round, not before
        await s.append(*make_segment(scope, "the parcel went to Oslo"))
        await s.maintain()  # runs here while the child starts
        pid = await _ready_child(s)
        for text in ("then on to Bergen", "and back to Oslo"):
            await s.append(*make_segment(scope, text))
            await s.maintain()
            assert _compactor(s).pid == pid
        assert _compactor(s).rounds == 2
        assert len(await s.timeline(scope)) == 3
    assert _compactor(s).pid is None
    _assert_gone(pid)
    assert _pipes() == pipes


async def _in_flight(store: MemoryStore, pid: int) -> asyncio.Task[object]:
    """A round whose request the stopped child ``pid`` holds, never to answer."""
    os.kill(pid, signal.SIGSTOP)
    task: asyncio.Task[object] = asyncio.create_task(store.maintain())
    for _ in range(1000):
        if _compactor(store)._lock.locked():
            await asyncio.sleep(0.1)  # the request written, its reply awaited
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("the round sent no request")


async def test_a_cancelled_round_kills_its_child_and_a_later_one_starts_one(
    tmp_path: Path, scope: Scope
) -> None:
    async with MemoryStore.open(tmp_path / "store", encoder=HashEncoder(32), settings=QUIET) as s:
        await s.create_scope(scope)
        await s.append(*make_segment(scope, "the parcel went to Oslo"))
        await s.maintain()
        pid = await _ready_child(s)
        task = await _in_flight(s, pid)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _compactor(s).pid is None
        _assert_gone(pid)
        await s.maintain()
        assert await _ready_child(s) != pid


async def test_a_child_that_dies_fails_its_round_and_a_later_one_starts_one(
    tmp_path: Path, scope: Scope
) -> None:
    async with MemoryStore.open(tmp_path / "store", encoder=HashEncoder(32), settings=QUIET) as s:
        await s.create_scope(scope)
        await s.append(*make_segment(scope, "the parcel went to Oslo"))
        await s.maintain()
        first = await _ready_child(s)
        task = await _in_flight(s, first)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(StoreError, match="LanceDB optimize failed") as failed:
            await task
        # The round fails with the child's end (its status depends on when it died).
        assert isinstance(failed.value.__cause__, OptimizeFailed)
        _assert_gone(first)
        await s.maintain()
        second = await _ready_child(s)
        assert second != first
        # Killed between rounds: the next round sees it gone and starts another.
        os.kill(second, signal.SIGKILL)
        await asyncio.sleep(0.5)
        await s.maintain()
        assert await _ready_child(s) not in (first, second)
        _assert_gone(second)
