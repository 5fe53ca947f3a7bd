"""Background housekeeping: runs a store's ``maintain`` now and then, never per write.

A round starts every ``interval_s`` seconds, or sooner once ``after_rows`` chunk rows were
added since the last round. Failures are logged and retried next round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from refrag_agent.logs import get_logger

log = get_logger(__name__)


class Housekeeper:
    def __init__(
        self,
        maintain: Callable[[], Awaitable[Any]],
        *,
        interval_s: float | None,
        after_rows: int,
    ) -> None:
        self._maintain = maintain
        self.interval_s = interval_s
        self.after_rows = after_rows
        self._rows = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.rounds = 0

    def start(self) -> None:
        if self.interval_s is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="refrag-memory-housekeeping")

    def rows_added(self, n: int) -> None:
        self._rows += n
        if self._rows >= self.after_rows:
            self._wake.set()

    async def _run(self) -> None:
        assert self.interval_s is not None
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)
            # wait_for can swallow a cancel that races with the wake-up (3.10/3.11), so
            # stopping is also a flag checked here.
            if self._stopping:
                return
            self._wake.clear()
            self._rows = 0
            try:
                report = await self._maintain()
                self.rounds += 1
                log.debug("memory.housekeeping", report=report)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("memory.housekeeping_failed", error=repr(e))

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
