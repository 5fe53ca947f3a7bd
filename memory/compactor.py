"""LanceDB's ``optimize`` run in a long-lived child process at a lower CPU priority.

A housekeeping round's long part is LanceDB's ``optimize``: it compacts every fragment
under a million rows (so it rewrites the whole table until then), folds new rows into
each index and drops old versions. Run in the store's own process it shares LanceDB's
thread pool (one per process, as many threads as cores) and the cores with the appends:
on two cores an append that met a round took about twice as long (p50 25-29 ms against
15 ms; the slowest ones made the append p99). In a child process the work is the same,
but it has its own thread pool and runs ``NICE`` steps below the store, so the
scheduler serves the store's appends first; the child's commits meet the store's as any
other writer's do (LanceDB resolves them).

One child serves one table for the store's life (:class:`Compactor`): it is started on
the first round and reused by every later one, since starting Python and importing
lancedb takes a second or two on busy cores, which made every round that much longer
(and, with the rest between rounds, rounds fewer). Rounds that come while it starts run
their optimize in the store's process (:meth:`Compactor.ready`). It is started with
``runpy.run_path`` on this file, so it imports only the standard library and lancedb, not
the package. Its settings (the table's URI, storage options with their credentials) go to
it as the first line on its stdin, never on its command line; then each request is one
JSON line on its stdin and each reply one on its stdout. A request that is cancelled
kills the child; a child that died is reported as :class:`OptimizeFailed` for that round,
and the next round starts a new one. :meth:`Compactor.close` ends it and reaps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from datetime import timedelta
from typing import Any

# Steps below the store's process. Small on purpose: the store's appends come first, but
# a child much lower (5 or 10 steps) got no CPU at all while the store appended without a
# pause on busy cores, its rounds never ended and old versions piled up (test_soak).
NICE = 2
_READY = b'{"ready": true}\n'
_ATTEMPTS = 6
_STDERR_TAIL = 2000
_EXIT_WAIT_S = 5.0  # for a child told to stop (its stdin closed) before it is killed
_LINE_LIMIT = 1 << 20  # bytes of one reply line
_RUN = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"


class OptimizeFailed(Exception):
    """The child failed to optimize, or exited; carries its error or the end of its stderr."""

    def __init__(self, returncode: int | None, stderr: str) -> None:
        super().__init__(f"exit status {returncode}: {stderr}")
        self.returncode = returncode
        self.stderr = stderr


class Compactor:
    """The child process that optimizes ``table`` at ``uri``; started on first use."""

    def __init__(self, uri: str, table: str, *, storage_options: dict[str, str] | None) -> None:
        self._settings = {
            "uri": uri,
            "table": table,
            "storage_options": storage_options,
            "nice": NICE,
        }
        self._child: asyncio.subprocess.Process | None = None
        self._stderr: bytearray = bytearray()
        self._drain: asyncio.Task[None] | None = None
        self._ready: asyncio.Task[bytes] | None = None  # its first line, once it can work
        self._lock = asyncio.Lock()
        self.rounds = 0  # optimizes the children of this compactor have done

    async def ready(self) -> bool:
        """Whether a child is up and ready for :meth:`optimize`; starts one if none is,
        without waiting for it (Python and lancedb take a second or more to load)."""
        async with self._lock:
            await self._started()
            assert self._ready is not None
            if not self._ready.done():
                return False
            if self._ready.cancelled() or self._ready.exception() or self._ready.result() != _READY:
                await self._end(kill=True)  # died while starting: the next call starts one
                return False
            return True

    @property
    def pid(self) -> int | None:
        """The running child's process id, or None while there is none."""
        return self._child.pid if self._child is not None else None

    async def optimize(self, *, cleanup_older_than: timedelta) -> dict[str, Any]:
        """Run ``optimize(cleanup_older_than=...)`` in the child; return its statistics.

        Waits for a child that is still starting. Cancelling kills the child (LanceDB
        commits are atomic: a killed optimize leaves at most unreferenced files, which a
        later cleanup removes).
        """
        request = {"cleanup_ms": round(cleanup_older_than.total_seconds() * 1000)}
        async with self._lock:
            child = await self._started()
            assert child.stdin is not None and child.stdout is not None
            assert self._ready is not None
            try:
                child.stdin.write(json.dumps(request).encode() + b"\n")
                await child.stdin.drain()
                line = await asyncio.shield(self._ready)
                if line == _READY:
                    line = await child.stdout.readline()
            except (ConnectionError, ValueError):  # its stdin closed, or a line too long
                line = b""
            except BaseException:  # cancelled: the child may be mid-commit, so it goes
                await asyncio.shield(self._end(kill=True))
                raise
            if not line.endswith(b"\n"):  # it exited
                await self._end(kill=True)
                raise OptimizeFailed(child.returncode, self._stderr_tail())
            reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise OptimizeFailed(None, str(reply["error"]))
        self.rounds += 1
        stats: dict[str, Any] = reply["stats"]
        return stats

    async def close(self) -> None:
        """Stop the child (its stdin closed, killed if it does not exit) and reap it."""
        await self._end(kill=False)

    async def _started(self) -> asyncio.subprocess.Process:
        if self._child is not None and self._child.returncode is None:
            return self._child
        await self._end(kill=True)  # one that exited between rounds: reap it
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _RUN,
            os.path.abspath(__file__),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        assert child.stdin is not None and child.stderr is not None
        self._child = child
        self._stderr.clear()
        # Read stderr as it comes: a child blocked on a full pipe would never reply.
        self._drain = asyncio.create_task(self._keep_stderr(child.stderr))
        self._ready = asyncio.create_task(child.stdout.readline())  # type: ignore[union-attr]
        child.stdin.write(json.dumps(self._settings).encode() + b"\n")
        return child

    async def _keep_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65_536):
            self._stderr += chunk
            del self._stderr[: -4 * _STDERR_TAIL]

    def _stderr_tail(self) -> str:
        return self._stderr.decode(errors="replace")[-_STDERR_TAIL:]

    async def _end(self, *, kill: bool) -> None:
        child, drain, ready = self._child, self._drain, self._ready
        self._child = self._drain = self._ready = None
        if child is None:
            return
        assert child.stdin is not None
        if child.returncode is None:
            if kill:
                child.kill()
            else:
                child.stdin.close()  # the child's loop ends at the end of its stdin
        try:
            await asyncio.wait_for(child.wait(), _EXIT_WAIT_S)
        except asyncio.TimeoutError:
            child.kill()
            await child.wait()
        child.stdin.close()
        for task in (drain, ready):  # both end at the end of the child's output
            if task is not None:
                with contextlib.suppress(Exception):
                    await task


async def _optimize(settings: dict[str, Any], cleanup_ms: int) -> dict[str, Any]:
    import lancedb

    # A new connection per round: LanceDB caches index readers and manifests per
    # connection and never lets go of those of old versions (see ChunkTable.reopen).
    db = await lancedb.connect_async(settings["uri"], storage_options=settings["storage_options"])
    try:
        table = await db.open_table(settings["table"])
        older_than = timedelta(milliseconds=cleanup_ms)
        # Commits of the store's process can conflict with this one's; LanceDB retries
        # some itself, a few more here with backoff (as the store does for its own).
        try:
            for attempt in range(_ATTEMPTS):
                try:
                    stats = await table.optimize(cleanup_older_than=older_than)
                    break
                except Exception:
                    if attempt == _ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(0.02 * 2**attempt)
        finally:
            table.close()
    finally:
        db.close()
    return {"compaction": str(stats.compaction), "prune": str(stats.prune)}


def _main() -> None:
    import warnings

    import lancedb  # noqa: F401  (loaded before the request that needs it)

    settings = json.loads(sys.stdin.readline())
    if hasattr(os, "nice"):
        os.nice(settings["nice"])
    # A purge drops every old version (1 ms); LanceDB's warning about it is for readers of
    # other processes, which the store's docs cover.
    warnings.filterwarnings("ignore", r"optimize\(cleanup_older_than", UserWarning)
    sys.stdout.write(_READY.decode())
    sys.stdout.flush()
    loop = asyncio.new_event_loop()
    try:
        for line in sys.stdin:  # one request a line, until the store closes stdin
            request = json.loads(line)
            try:
                reply: dict[str, Any] = {
                    "stats": loop.run_until_complete(_optimize(settings, request["cleanup_ms"]))
                }
            except Exception as e:
                reply = {"error": repr(e)[-_STDERR_TAIL:]}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        loop.close()


if __name__ == "__main__":
    _main()
