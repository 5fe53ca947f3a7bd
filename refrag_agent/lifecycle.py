"""What an ``open()`` returns: await it, or use it with ``async with`` to close it on exit."""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from typing_extensions import Self


class Closeable(Protocol):
    async def aclose(self) -> None: ...


T = TypeVar("T", bound=Closeable)


class AsyncClosing:
    """``async with obj:`` calls ``obj.aclose()`` on exit; subclasses define ``aclose``."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Opening(Generic[T]):
    """``x = await Thing.open(...)`` or ``async with Thing.open(...) as x:``."""

    def __init__(self, opening: Awaitable[T]) -> None:
        self._opening = opening
        self._opened: T | None = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._opening.__await__()

    async def __aenter__(self) -> T:
        self._opened = await self._opening
        return self._opened

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._opened is not None:
            await self._opened.aclose()
