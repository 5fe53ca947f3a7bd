"""``refrag-agent bench serve`` (at toy size, also ``--in-process``) and the ``serve``
command's safety check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refrag_agent.bench.in_process import run_in_process_bench
from refrag_agent.bench.serve import run_serve_bench
from refrag_agent.cli import main
from refrag_agent.engines import TINY_MODEL
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
        (mode, c) for mode in ("agent", "engine", "no-decoder") for c in (1, 4, 16)
    ]
    for r in in_process["rows"]:
        assert r["requests"] == r["concurrency"] and r["repeats"] == 1
        assert r["output_tokens_per_s"] > 0 and 0 < r["output_tokens_per_request"] <= 2
        if r["mode"] == "no-decoder":  # nothing decoded: no prefill, no step, no TTFT
            assert r["ttft_p99_ms"] == r["prefills_per_repeat"] == r["rows_per_step"] == 0
        else:
            assert 0 < r["ttft_p50_ms"] <= r["ttft_p99_ms"] and r["prefills_per_repeat"] >= 1
    assert all(in_process["speedup"][mode]["1"] == 1 for mode in in_process["speedup"])
    assert 1 < in_process["max_rows"] <= 16


def test_in_process_bench_on_a_checkpoint(tmp_path: Path) -> None:
    """``bench serve --in-process --model DIR``: repeats give each speedup a range."""
    out = tmp_path / "in-process.json"
    payload = run_in_process_bench(
        json_path=out,
        model=TINY_MODEL,
        context_tokens=64,
        max_tokens=2,
        rounds=1,
        repeats=2,
        levels=(1, 2),
    )
    assert json.loads(out.read_text()) == payload
    assert payload["benchmark"] == "serve-in-process"
    assert payload["model"]["decoder"] == str(TINY_MODEL)
    assert len(payload["load_average"]["before"]) == 3
    part = payload["in_process"]
    assert part["repeats"] == 2 and part["prompt_positions"] > 0
    for r in part["rows"]:
        assert r["requests"] == 2 * r["concurrency"] and r["repeats"] == 2
        assert r["speedup_min"] <= r["speedup"] <= r["speedup_max"]
        assert r["speedup"] == part["speedup"][r["mode"]][str(r["concurrency"])]


def test_bench_serve_model_needs_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "serve", "--model", "bundled"]) == 2
    assert "--model and --repeats go with --in-process" in capsys.readouterr().err


def test_serve_refuses_open_address_without_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REFRAG_AGENT_API_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "serving beyond loopback needs an API key" in capsys.readouterr().err


def test_serve_refuses_a_malformed_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--api-key", "k1", "--api-key", "k2:"]) == 2
    assert "tenants must be non-empty" in capsys.readouterr().err
