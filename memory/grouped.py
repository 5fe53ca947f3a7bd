"""Concurrent reads that run as one: calls waiting at the same moment share one operation.

The store's grouped reads (lookups of stored embeddings, fetches of segments' rows) each
queue a caller's request under a key, and one task runs every waiting request of a key
together, then hands each caller its own result. A cancelled caller is left out; when the
operation fails, every caller of its group gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
P = TypeVar("P")
R = TypeVar("R")


class Grouped(Generic[K, P, R]):
    """``await grouped.call(key, request)``: the result of ``run(key, requests)`` for it.

    ``run`` takes a key and the requests of one group and returns one result per request,
    in order. A group holds requests of one key whose ``size`` adds up to at most
    ``limit`` (a request larger than ``limit`` goes alone).
    """

    def __init__(
        self,
        run: Callable[[K, list[P]], Awaitable[list[R]]],
        *,
        size: Callable[[P], int] = lambda _: 1,
        limit: int | None = None,
    ) -> None:
        self._run = run
        self._size = size
        self._limit = limit
        self._waiting: list[tuple[K, P, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def call(self, key: K, request: P) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, request, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    def _groups(self) -> list[tuple[K, list[tuple[P, asyncio.Future[R]]]]]:
        waiting, self._waiting = self._waiting, []
        groups: list[tuple[K, list[tuple[P, asyncio.Future[R]]]]] = []
        last: dict[K, tuple[list[tuple[P, asyncio.Future[R]]], int]] = {}
        for key, request, future in waiting:
            if future.done():  # its caller was cancelled
                continue
            n = self._size(request)
            members, size = last.get(key, ([], 0))
            if not members or (self._limit is not None and size + n > self._limit):
                members, size = [], 0
                groups.append((key, members))
            members.append((request, future))
            last[key] = (members, size + n)
        return groups

    async def _drain(self) -> None:
        while self._waiting:
            # Yield once so that calls started in the same tick join this round.
            await asyncio.sleep(0)
            for key, members in self._groups():
                try:
                    results = await self._run(key, [request for request, _ in members])
                except Exception as e:
                    for _, future in members:
                        if not future.done():
                            future.set_exception(e)
                    continue
                except BaseException:  # the loop is closing: no caller waits forever
                    for _, future in members:
                        future.cancel()
                    raise
                for (_, future), result in zip(members, results, strict=True):
                    if not future.done():
                        future.set_result(result)
