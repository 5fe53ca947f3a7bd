"""Store soak benchmark behind ``refrag-agent bench soak``: does a long run stay flat?

Two runs on an embedded store (SQLite + a local LanceDB folder) with default settings, so
background housekeeping runs as it would in production:

- ``append``: one segment per operation (8 chunks of 16 tokens, embeddings given);
- ``mixed``: two appends, then one respond as the SDK plans it (the session's timeline,
  a hybrid search, a fetch of the segments it keeps, then the question and the answer
  appended); sessions change every 200 operations so each context stays small and what
  grows is the store.

After every ``window`` operations it records the window's latency (mean, p50, p95), the
process's resident memory, its open file handles (and those on deleted files), and what
the LanceDB folder holds: table versions (manifests) and data files. A store that stays
flat shows the same figures in the last window as in the first.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from refrag_agent.bench.common import percentile, run_header, write_json
from refrag_agent.bench.store import DIM, Corpus
from refrag_agent.memory import HashEncoder, MemoryStore, StoreSettings
from refrag_agent.memory.chunks import TABLE
from refrag_agent.memory.store import LANCE_DIR
from refrag_agent.timeline import Scope, Segment, SegmentKind

Mode = Literal["append", "mixed"]
CHUNKS_PER_SEGMENT = 8
OPS_PER_SESSION = 200
FETCH_SEGMENTS = 32
FULL_OPERATIONS = 10_000
QUICK_OPERATIONS = 2_000
WINDOW = 1_000


def open_handles() -> tuple[int | None, int | None]:
    """(open file descriptors, those whose file was deleted) of this process; Linux only."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return None, None
    total = deleted = 0
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:  # closed while listing
            continue
        total += 1
        deleted += target.endswith(" (deleted)")
    return total, deleted


def rss_mib() -> float | None:
    """Resident memory of this process in MiB; Linux only."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def _count(folder: Path, suffix: str = "") -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for entry in folder.iterdir() if entry.name.endswith(suffix))


def _checkpoint(folder: Path, ops: int, ms: list[float]) -> dict[str, Any]:
    handles, deleted = open_handles()
    table = folder / LANCE_DIR / f"{TABLE}.lance"  # LanceDB's layout of one table
    return {
        "ops": ops,
        "mean_ms": round(statistics.fmean(ms), 3),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "rss_mib": rss_mib(),
        "handles": handles,
        "deleted_handles": deleted,
        "versions": _count(table / "_versions", ".manifest"),
        "data_files": _count(table / "data"),
    }


async def soak(
    folder: Path,
    *,
    mode: Mode,
    operations: int,
    window: int = WINDOW,
    settings: StoreSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``operations`` operations on a new store in ``folder``; one checkpoint per window.

    ``settings`` default to :class:`StoreSettings` defaults: the run measures what a user
    gets without tuning. ``progress`` is called with the number of operations done.
    """
    corpus = Corpus()
    checkpoints: list[dict[str, Any]] = []
    async with MemoryStore.open(folder, encoder=HashEncoder(DIM), settings=settings) as store:
        ms: list[float] = []
        scope = Scope(tenant="soak", session="s0")
        for op in range(operations):
            if op % OPS_PER_SESSION == 0:
                scope = Scope(tenant=f"soak{op // 1000}", session=f"s{op}")
                await store.create_scope(scope)
            started = time.perf_counter()
            if mode == "mixed" and op % 3 == 2:
                await _respond(store, scope, corpus, f"q{op}")
            else:
                segment, chunks, vectors = corpus.segment(
                    scope, f"a{op}", n_chunks=CHUNKS_PER_SEGMENT
                )
                await store.append(segment, chunks, embeddings=vectors)
            ms.append((time.perf_counter() - started) * 1000)
            if (op + 1) % window == 0 or op + 1 == operations:
                checkpoints.append(_checkpoint(folder, op + 1, ms))
                ms = []
            if progress is not None:
                progress(op + 1)
    return checkpoints


async def _respond(store: MemoryStore, scope: Scope, corpus: Corpus, turn: str) -> None:
    """The store calls of one SDK respond: read, search, fetch, then two appends."""
    question, chunks, vectors = corpus.segment(scope, f"{turn}-user", n_chunks=2)
    await store.append(question, chunks, embeddings=vectors)
    timeline = await store.timeline(scope)
    hits = await store.search(scope, question.text, limit=50)
    wanted = list(dict.fromkeys([h.segment_id for h in hits] + [s.id for s in timeline[-4:]]))
    await store.fetch(scope, wanted[:FETCH_SEGMENTS])
    answer, chunks, vectors = corpus.segment(scope, f"{turn}-assistant", n_chunks=4)
    answer = Segment(id=answer.id, scope=scope, kind=SegmentKind.ASSISTANT, text=answer.text)
    await store.append(answer, chunks, embeddings=vectors)


def _print_table(result: dict[str, Any]) -> None:
    header = (
        f"{'run':>7} {'ops':>7} {'mean ms':>8} {'p50 ms':>7} {'p95 ms':>7} {'RSS MiB':>8}"
        f" {'handles':>8} {'deleted':>8} {'versions':>9} {'data files':>11}"
    )
    print(header)
    print("-" * len(header))
    for run in ("append", "mixed"):
        for row in result[run]:
            print(
                f"{run:>7} {row['ops']:>7,} {row['mean_ms']:>8.1f} {row['p50_ms']:>7.1f}"
                f" {row['p95_ms']:>7.1f} {row['rss_mib'] or 0:>8.0f} {row['handles'] or 0:>8}"
                f" {row['deleted_handles'] or 0:>8} {row['versions']:>9} {row['data_files']:>11}"
            )


async def _run(operations: int, root: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for mode in ("append", "mixed"):
        with tqdm(total=operations, desc=f"soak {mode}", unit="op") as bar:
            result[mode] = await soak(
                root / mode,
                mode=mode,
                operations=operations,
                progress=lambda done: bar.update(done - bar.n),
            )
    return result


def run_soak_bench(
    *, quick: bool, json_path: Path | None, operations: int | None = None
) -> dict[str, Any]:
    """Run both soak runs, print a row per 1,000 operations, write JSON; return it."""
    n = operations if operations is not None else QUICK_OPERATIONS if quick else FULL_OPERATIONS
    with tempfile.TemporaryDirectory(prefix="refrag-bench-soak-") as tmp:
        measured = asyncio.run(_run(n, Path(tmp)))
    result: dict[str, Any] = {
        **run_header("soak"),
        "quick": quick,
        "operations": n,
        "window": WINDOW,
        "chunks_per_segment": CHUNKS_PER_SEGMENT,
        "dim": DIM,
        **measured,
    }
    _print_table(result)
    write_json(json_path, result)
    return result
