"""Background housekeeping: runs a store's ``maintain`` now and then, never per write.

A round starts every ``interval_s`` seconds, or sooner once ``after_rows`` chunk rows were
added or ``after_versions`` LanceDB commits (each a table version, an append's also a new
fragment) were made since the last round, or at once when woken (after a forget). Failures
are logged and retried next round.

A round costs about as much as the table holds: LanceDB's compaction rewrites every
fragment under its target size (a million rows) in one go, and its Python API takes no
compaction options. So a round that writes started comes no sooner than ``REST_FACTOR``
times the last round's length after it: housekeeping takes at most a third of the time,
and the fragments between rounds grow with the table (up to that target), not without end.
That long part runs in a child process at a lower priority (:mod:`.compactor`), so the
appends and searches of the store's process do not wait for it; reads that meet the old
versions it drops are run again on the newest one (:meth:`.ChunkTable._read`).

:func:`release_free_memory` is what a round does last, on glibc: LanceDB allocates from
many threads, and glibc keeps what they free in per-thread arenas instead of returning it,
so a long-running process's resident memory creeps up round after round without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from refrag_agent.logs import get_logger

log = get_logger(__name__)

REST_FACTOR = 2.0


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):  # a C library without it (musl)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _malloc_trim()


async def release_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc's ``malloc_trim``; else nothing)."""
    if _TRIM is not None:
        await asyncio.to_thread(_TRIM, 0)


class Housekeeper:
    def __init__(
        self,
        maintain: Callable[[], Awaitable[Any]],
        *,
        interval_s: float | None,
        after_rows: int,
        after_versions: int,
    ) -> None:
        self._maintain = maintain
        self.interval_s = interval_s
        self.after_rows = after_rows
        self.after_versions = after_versions
        self._rows = 0
        self._versions = 0
        self._due = asyncio.Event()  # a threshold was crossed, or woken
        self._urgent = asyncio.Event()  # woken: no rest
        self._rest_until = 0.0  # event-loop time
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.rounds = 0

    def start(self) -> None:
        if self.interval_s is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="refrag-memory-housekeeping")

    def committed(self, rows: int) -> None:
        """One LanceDB commit of this store, adding ``rows`` chunk rows."""
        self._rows += rows
        self._versions += 1
        if self._rows >= self.after_rows or self._versions >= self.after_versions:
            self._due.set()

    def wake(self) -> None:
        """Start a round now, without the rest after the last one."""
        self._urgent.set()
        self._due.set()

    async def _run(self) -> None:
        assert self.interval_s is not None
        loop = asyncio.get_running_loop()
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._due.wait(), timeout=self.interval_s)
            rest = self._rest_until - loop.time()
            if rest > 0 and not self._stopping:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), timeout=rest)
            # wait_for can swallow a cancel that races with the wake-up (3.10/3.11), so
            # stopping is also a flag checked here.
            if self._stopping:
                return
            self._due.clear()
            self._urgent.clear()
            self._rows = self._versions = 0
            started = loop.time()
            try:
                report = await self._maintain()
                self.rounds += 1
                log.debug("memory.housekeeping", report=report)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("memory.housekeeping_failed", error=repr(e))
            self._rest_until = loop.time() + REST_FACTOR * (loop.time() - started)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping = True
        self._urgent.set()
        self._due.set()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
