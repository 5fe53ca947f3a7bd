"""Memory-store benchmark behind ``refrag-agent bench store``.

Measures, on an embedded store (SQLite + a local LanceDB folder):

- append latency per segment (16 chunks of 16 tokens, embeddings given: encoder excluded);
- fetch of 1,024 chunks with embeddings for one context (64 segments of one session);
- hybrid search latency, session-scoped and across a tenant's sessions, at each size;
- bytes on disk per chunk.

Large stores are built with bulk ingest (``append_many``), not one append per segment.
Vectors are synthetic (topic centroids plus noise, 384 wide like MiniLM) and the query
encoder is the hash encoder, so search figures are the store's cost, not the encoder's.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from refrag_agent.bench.common import percentile, run_header, write_json
from refrag_agent.memory import HashEncoder, MemoryStore, StoreSettings
from refrag_agent.timeline import Chunk, Scope, Segment, SegmentKind, content_hash

DIM = 384
CHUNKS_PER_SEGMENT = 16
TOKENS_PER_CHUNK = 16
SEGMENTS_PER_SESSION = 256
FETCH_SEGMENTS = 64  # 64 x 16 = 1,024 chunks
FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (2_000, 10_000)


def _summary(ms: Sequence[float], *qs: int) -> dict[str, float]:
    out = {f"p{q}_ms": round(percentile(ms, q), 3) for q in qs}
    out["mean_ms"] = round(statistics.fmean(ms), 3)
    out["n"] = len(ms)
    return out


class Corpus:
    """Deterministic synthetic segments: words from a Zipf-like vocabulary, topic vectors."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.vocab = [f"w{i:05d}" for i in range(20_000)]
        weights = 1.0 / np.arange(1, len(self.vocab) + 1)
        self.p = weights / weights.sum()
        centroids = self.rng.standard_normal((256, DIM)).astype(np.float32)
        self.centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)

    def words(self, n: int) -> list[str]:
        return [self.vocab[i] for i in self.rng.choice(len(self.vocab), size=n, p=self.p)]

    def segment(
        self, scope: Scope, segment_id: str, *, n_chunks: int = CHUNKS_PER_SEGMENT
    ) -> tuple[Segment, list[Chunk], np.ndarray]:
        words = self.words(n_chunks * 3)
        chunks = []
        for i in range(n_chunks):
            text = " ".join(words[3 * i : 3 * i + 3]) + " "
            ids = tuple(int(t) for t in self.rng.integers(0, 50_000, TOKENS_PER_CHUNK))
            chunks.append(Chunk(index=i, token_ids=ids, text=text, content_hash=content_hash(text)))
        topic = self.centroids[self.rng.integers(0, len(self.centroids))]
        noise = self.rng.standard_normal((n_chunks, DIM)).astype(np.float32) * 0.3
        vectors = topic + noise  # (n_chunks, DIM)
        text = "".join(c.text for c in chunks)
        segment = Segment(id=segment_id, scope=scope, kind=SegmentKind.USER, text=text)
        return segment, chunks, vectors.astype(np.float32)


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += (Path(root) / name).stat().st_size
    return total


async def _bench_append(folder: Path, n: int, corpus: Corpus) -> dict[str, Any]:
    # Default settings: background housekeeping compacts as it would in production.
    settings = StoreSettings()
    scope = Scope(tenant="bench", session="append")
    async with MemoryStore.open(folder, encoder=HashEncoder(DIM), settings=settings) as store:
        await store.create_scope(scope)
        items = [corpus.segment(scope, f"a{i}") for i in range(n + 5)]
        for segment, chunks, vectors in items[:5]:  # warm-up
            await store.append(segment, chunks, embeddings=vectors)
        ms = []
        for segment, chunks, vectors in tqdm(items[5:], desc="append", unit="seg"):
            start = time.perf_counter()
            await store.append(segment, chunks, embeddings=vectors)
            ms.append((time.perf_counter() - start) * 1000)
    return {"segments": n, "chunks_per_segment": CHUNKS_PER_SEGMENT, **_summary(ms, 50, 95, 99)}


async def _build(folder: Path, n_chunks: int, corpus: Corpus) -> tuple[MemoryStore, list[Scope]]:
    # Old versions are dropped at once so bytes on disk count live data only.
    settings = StoreSettings(
        maintenance_interval_s=None, ann_min_rows=100_000, cleanup_older_than_s=0
    )
    store = await MemoryStore.open(folder, encoder=HashEncoder(DIM), settings=settings)
    n_segments = max(n_chunks // CHUNKS_PER_SEGMENT, FETCH_SEGMENTS)
    n_sessions = max(1, -(-n_segments // SEGMENTS_PER_SESSION))
    scopes = [Scope(tenant="bench", session=f"s{i}") for i in range(n_sessions)]
    for scope in scopes:
        await store.create_scope(scope)
    batch: list[tuple[Segment, Sequence[Chunk], Any]] = []
    with tqdm(
        total=n_segments * CHUNKS_PER_SEGMENT, desc=f"load {n_chunks:,}", unit="chunk"
    ) as bar:
        for i in range(n_segments):
            scope = scopes[i // SEGMENTS_PER_SESSION]
            batch.append(corpus.segment(scope, f"g{i}"))
            if len(batch) == 2048 or i == n_segments - 1:
                await store.append_many(batch)
                bar.update(len(batch) * CHUNKS_PER_SEGMENT)
                batch = []
    return store, scopes


async def _bench_size(root: Path, n_chunks: int, corpus: Corpus, *, trials: int) -> dict[str, Any]:
    folder = root / f"store-{n_chunks}"
    started = time.perf_counter()
    store, scopes = await _build(folder, n_chunks, corpus)
    load_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        with warnings.catch_warnings():
            # LanceDB warns that cleanup_older_than=0 breaks other readers; this process is
            # the folder's only user, so dropping every old version at once is safe here.
            warnings.filterwarnings("ignore", r"optimize\(cleanup_older_than=0\)", UserWarning)
            report = await store.maintain()  # indexes (ANN from 100K rows), compaction
        index_s = time.perf_counter() - started
        scope = scopes[0]
        ids = [s.id for s in await store.timeline(scope)]
        rng = np.random.default_rng(1)
        fetch_ms = []
        for trial in tqdm(range(trials + 3), desc=f"fetch {n_chunks:,}", unit="q"):
            wanted = list(rng.choice(ids, size=min(FETCH_SEGMENTS, len(ids)), replace=False))
            start = time.perf_counter()
            batch = await store.fetch(scope, wanted)
            elapsed = (time.perf_counter() - start) * 1000
            assert len(batch) == len(wanted) * CHUNKS_PER_SEGMENT
            if trial >= 3:  # warm-up
                fetch_ms.append(elapsed)
        queries = [" ".join(corpus.words(3)) for _ in range(trials + 3)]
        search: dict[str, Any] = {}
        for label, wide in (("session", False), ("tenant", True)):
            ms = []
            for i, query in enumerate(tqdm(queries, desc=f"search/{label} {n_chunks:,}")):
                start = time.perf_counter()
                await store.search(scope, query, limit=10, all_sessions=wide)
                if i >= 3:
                    ms.append((time.perf_counter() - start) * 1000)
            search[label] = _summary(ms, 50, 95)
        stats = await store.stats()
    finally:
        await store.aclose()
    disk = _dir_bytes(folder)
    return {
        "chunks": stats.chunks,
        "segments": stats.segments,
        "sessions": len(scopes),
        "load_s": round(load_s, 2),
        "index_s": round(index_s, 2),
        "indexes_created": report.indexes_created,
        "fetch_1024": {"chunks": FETCH_SEGMENTS * CHUNKS_PER_SEGMENT, **_summary(fetch_ms, 50, 95)},
        "search_hybrid": search,
        "bytes_on_disk": disk,
        "bytes_per_chunk": round(disk / max(stats.chunks, 1), 1),
    }


def _print_table(result: dict[str, Any]) -> None:
    append = result["append"]
    print(
        f"\nappend (16 chunks/segment, embeddings given): p50 {append['p50_ms']:.2f} ms"
        f"  p99 {append['p99_ms']:.2f} ms  (n={append['n']})"
    )
    header = (
        f"{'chunks':>10} {'fetch1024 p50':>14} {'p95':>8} {'search/sess p50':>16} {'p95':>8}"
        f" {'search/tenant p50':>18} {'p95':>8} {'B/chunk':>9} {'load s':>8} {'index s':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in result["sizes"]:
        f, s, t = row["fetch_1024"], row["search_hybrid"]["session"], row["search_hybrid"]["tenant"]
        print(
            f"{row['chunks']:>10,} {f['p50_ms']:>14.2f} {f['p95_ms']:>8.2f} {s['p50_ms']:>16.2f}"
            f" {s['p95_ms']:>8.2f} {t['p50_ms']:>18.2f} {t['p95_ms']:>8.2f}"
            f" {row['bytes_per_chunk']:>9.0f} {row['load_s']:>8.1f} {row['index_s']:>8.1f}"
        )


async def _run(quick: bool, sizes: Sequence[int], root: Path) -> dict[str, Any]:
    corpus = Corpus()
    append = await _bench_append(root / "append", 200 if quick else 1000, corpus)
    trials = 30 if quick else 100
    rows = [await _bench_size(root, n, corpus, trials=trials) for n in sizes]
    return {"append": append, "sizes": rows}


def run_store_bench(
    *, quick: bool, json_path: Path | None, sizes: Sequence[int] | None = None
) -> dict[str, Any]:
    """Run the store benchmark, print a table, write JSON to ``json_path``; return it."""
    chosen = list(sizes) if sizes is not None else list(QUICK_SIZES if quick else FULL_SIZES)
    with tempfile.TemporaryDirectory(prefix="refrag-bench-store-") as tmp:
        measured = asyncio.run(_run(quick, chosen, Path(tmp)))
    result: dict[str, Any] = {
        **run_header("store"),
        "quick": quick,
        "dim": DIM,
        "targets_ms": {"append_p99": 50, "fetch_1024_p95": 50, "search_p95_at_1M": 50},
        **measured,
    }
    _print_table(result)
    write_json(json_path, result)
    return result
