"""``refrag-agent bench serve`` (at toy size) and the ``serve`` command's safety check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refrag_agent.bench.serve import run_serve_bench
from refrag_agent.cli import main
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.tiny import random_decoder


def test_bench_payload(tmp_path: Path, minilm: ChunkEncoder) -> None:
    out = tmp_path / "serve.json"
    decoder = random_decoder("llama", vocab_size=512, hidden_size=32, max_positions=1024)
    payload = run_serve_bench(
        quick=True,
        json_path=out,
        context_tokens=256,
        max_tokens=2,
        rounds=1,
        decoder=decoder,
        encoder=minilm,
    )
    assert json.loads(out.read_text()) == payload
    assert set(payload) >= {"benchmark", "quick", "model", "context_tokens", "rows"}
    assert payload["benchmark"] == "serve" and payload["context_tokens"] == 256
    rows = payload["rows"]
    assert [(r["mode"], r["concurrency"]) for r in rows] == [
        (mode, c) for mode in ("compressed", "full") for c in (1, 4, 16)
    ]
    for r in rows:
        assert r["requests"] == r["concurrency"]
        assert 0 < r["ttft_p50_ms"] <= r["ttft_p99_ms"] and r["output_tokens_per_s"] > 0
    assert set(payload["throughput_ratio"]) == {"1", "4", "16"}
    in_process = payload["in_process"]
    assert [(r["mode"], r["concurrency"]) for r in in_process["rows"]] == [
        (mode, c) for mode in ("agent", "engine") for c in (1, 4, 16)
    ]
    for r in in_process["rows"]:
        assert r["requests"] == r["concurrency"] and 0 < r["ttft_p50_ms"] <= r["ttft_p99_ms"]
        assert r["output_tokens_per_s"] > 0 and 0 < r["output_tokens_per_request"] <= 2
    assert in_process["speedup"]["agent"]["1"] == in_process["speedup"]["engine"]["1"] == 1
    assert 1 < in_process["max_rows"] <= 16


def test_serve_refuses_open_address_without_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REFRAG_AGENT_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "serving beyond loopback needs an API key" in capsys.readouterr().err


def test_serve_refuses_a_malformed_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--api-key", "k1", "--api-key", "k2:"]) == 2
    assert "tenants must be non-empty" in capsys.readouterr().err
