from __future__ import annotations

import json
from pathlib import Path

from refrag_agent.bench.latency import run_latency_bench
from refrag_agent.model.encoder import ChunkEncoder


def test_latency_bench_writes_every_field(tmp_path: Path, minilm: ChunkEncoder) -> None:
    out = tmp_path / "latency.json"
    run_latency_bench(contexts=(256,), ks=(16, 32), repeats=1, json_path=out, encoder=minilm)
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "latency" and payload["machine"]["torch_threads"] >= 1
    assert 40e6 < payload["model"]["parameters"] < 60e6
    rows = payload["rows"]
    assert [(r["context_tokens"], r["k"]) for r in rows] == [(256, 16), (256, 32)]
    for r in rows:
        assert r["positions_compressed"] == 256 // r["k"] + 32
        assert r["positions_full"] == 256 + 32
        assert r["kv_bytes_full"] > r["kv_bytes_compressed"] > 0
        assert r["full_ttft_ms"] > 0 and r["compressed_ttft_ms"] > 0
        assert r["uncached_ttft_ms"] >= r["compressed_ttft_ms"]
