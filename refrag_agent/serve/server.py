"""Running the app: ``refrag-agent serve`` in the foreground, or a server in a thread.

The foreground server binds loopback unless told otherwise, and refuses a non-loopback
address without an API key. Both run uvicorn's h11 protocol with one addition: a
connection whose request head (request line and headers) has not all arrived within
``ServeLimits.max_receive_s`` of its first byte (or of the connection, for the first
request) is closed, so slow clients cannot hold connections open (slowloris).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from refrag_agent.budget import Budget
from refrag_agent.engines import resolve_model
from refrag_agent.errors import DecoderUnavailable, InvalidInput
from refrag_agent.logs import get_logger
from refrag_agent.memory import MemoryStore
from refrag_agent.serve.app import RefragServer
from refrag_agent.serve.auth import ApiKey
from refrag_agent.serve.limits import LOOPBACK, ServeLimits, is_loopback

log = get_logger(__name__)


def serve(
    model: Any = None,
    *,
    host: str = LOOPBACK,
    port: int = 8000,
    api_key: str | ApiKey | Iterable[str | ApiKey] | None = None,
    memory: str | Path | None = None,
    name: str | None = None,
    limits: ServeLimits | None = None,
    budget: Budget | None = None,
) -> None:
    """Load ``model`` (a checkpoint directory; ``None``: the bundled default) and serve it
    until interrupted. ``api_key``: as :class:`RefragServer` takes it; ``memory``: a store
    folder that requests may refer to by segment; ``budget``: the expansion budget of
    requests that name none."""
    if not is_loopback(host) and not api_key:
        raise InvalidInput(
            "serving beyond loopback needs an API key",
            host=host,
            fix="pass --api-key (or set REFRAG_AGENT_API_KEY), or bind 127.0.0.1",
        )
    loaded = resolve_model(model)
    served = name or (Path(str(model)).name if model is not None else "refrag-default")
    asyncio.run(
        _serve(
            RefragServer(loaded, name=served, limits=limits, api_key=api_key, budget=budget),
            host=host,
            port=port,
            memory=memory,
        )
    )


async def _serve(server: RefragServer, *, host: str, port: int, memory: str | Path | None) -> None:
    if memory is not None:
        server.memory = await MemoryStore.open(memory, encoder=server.model.encoder)
    config = _config(server, host=host, port=port)
    try:
        await uvicorn.Server(config).serve()
    finally:
        if server.memory is not None:
            await server.memory.aclose()


def _config(server: RefragServer, *, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        server.app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=5,
        http=_head_timeout(server.limits.max_receive_s),
    )


def _head_timeout(timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections whose request head is too slow."""

    class HeadTimeout(_HeadTimeout):
        head_timeout_s = timeout_s

    return HeadTimeout


class _HeadTimeout(H11Protocol):
    """A timer runs while a request head is being received: from the connection's start,
    then from the first byte of each later request; the complete head stops it."""

    head_timeout_s: float
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        log.warning("closed a connection: request head too slow", client=self.client)
        self.transport.close()


class ServerThread:
    """A :class:`RefragServer` on a free loopback port, in a background thread.

    ``with ServerThread(server) as running: httpx.get(running.url + "/health")``; for
    tests and benchmarks.
    """

    def __init__(self, server: RefragServer, *, host: str = LOOPBACK, start_timeout_s: float = 30):
        self.server = server
        self.host = host
        self.start_timeout_s = start_timeout_s
        self._uvicorn = uvicorn.Server(_config(server, host=host, port=0))
        self._thread = threading.Thread(target=self._uvicorn.run, name="refrag-http", daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise DecoderUnavailable("the server did not start", host=self.host)
            time.sleep(0.01)
        self.port = int(self._uvicorn.servers[0].sockets[0].getsockname()[1])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(self.start_timeout_s)
        self.server.close()
