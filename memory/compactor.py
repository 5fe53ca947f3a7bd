"""LanceDB's ``optimize`` run in a child process at a lower CPU priority.

A housekeeping round's long part is LanceDB's ``optimize``: it compacts every fragment
under a million rows (so it rewrites the whole table until then), folds new rows into
each index and drops old versions. Run in the store's own process it shares LanceDB's
thread pool (one per process, as many threads as cores) and the cores with the appends:
on two cores an append that met a round took about twice as long (p50 25-29 ms against
15 ms; the slowest ones made the append p99). In a child process the work is the same,
but it has its own thread pool and runs ``NICE`` steps below the store, so the
scheduler serves the store's appends first; the child's commits meet the store's as any
other writer's do (LanceDB resolves them).

The child is started with ``runpy.run_path`` on this file: it imports only the standard
library and lancedb, not the package (whose import would cost the child about as much
again). Its settings (the table's URI, storage options with their credentials) go to it
on stdin, never on its command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from typing import Any

NICE = 10  # steps below the store's process (the maximum, 19, is where it stops)
_ATTEMPTS = 6
_STDERR_TAIL = 2000
_RUN = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"


class OptimizeFailed(Exception):
    """The child exited without optimizing; carries the end of what it wrote to stderr."""

    def __init__(self, returncode: int | None, stderr: str) -> None:
        super().__init__(f"exit status {returncode}: {stderr}")
        self.returncode = returncode
        self.stderr = stderr


async def optimize_in_child(
    uri: str,
    table: str,
    *,
    cleanup_older_than: timedelta,
    storage_options: dict[str, str] | None,
) -> dict[str, Any]:
    """Run ``optimize(cleanup_older_than=...)`` on ``table`` at ``uri`` in a child process;
    return its statistics. Cancelling kills the child (LanceDB commits are atomic: a
    killed optimize leaves at most unreferenced files, which a later cleanup removes)."""
    settings = {
        "uri": uri,
        "table": table,
        "cleanup_ms": round(cleanup_older_than.total_seconds() * 1000),
        "storage_options": storage_options,
        "nice": NICE,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _RUN,
        os.path.abspath(__file__),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await child.communicate(json.dumps(settings).encode())
    except BaseException:
        if child.returncode is None:
            child.kill()
            await asyncio.shield(child.wait())
        raise
    if child.returncode != 0:
        raise OptimizeFailed(child.returncode, err.decode(errors="replace")[-_STDERR_TAIL:])
    stats: dict[str, Any] = json.loads(out.decode() or "{}")
    return stats


async def _optimize(settings: dict[str, Any]) -> dict[str, Any]:
    import lancedb

    db = await lancedb.connect_async(settings["uri"], storage_options=settings["storage_options"])
    table = await db.open_table(settings["table"])
    older_than = timedelta(milliseconds=settings["cleanup_ms"])
    # Commits of the store's process can conflict with this one's; LanceDB retries some
    # itself, a few more here with backoff (as the store does for its own commits).
    for attempt in range(_ATTEMPTS):
        try:
            stats = await table.optimize(cleanup_older_than=older_than)
            break
        except Exception:
            if attempt == _ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.02 * 2**attempt)
    table.close()
    return {"compaction": str(stats.compaction), "prune": str(stats.prune)}


def _main() -> None:
    import warnings

    settings = json.load(sys.stdin)
    if hasattr(os, "nice"):
        os.nice(settings["nice"])
    # A purge drops every old version (1 ms); LanceDB's warning about it is for readers of
    # other processes, which the store's docs cover.
    warnings.filterwarnings("ignore", r"optimize\(cleanup_older_than", UserWarning)
    print(json.dumps(asyncio.run(_optimize(settings))))


if __name__ == "__main__":
    _main()
