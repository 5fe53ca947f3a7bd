"""``bench all`` and ``bench summary``: JSON, plots and the page, on tiny sizes and fixtures.

The fixtures under ``fixtures/`` are payloads in each benchmark's shape: latency and store
from real runs (store's predates the run header: no date, no command), policies, quality
and serve written by hand so that some targets are met and some missed. The tiny run uses
the real latency, store and serve benchmarks and replays the policies and quality fixtures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from refrag_agent.bench import all as bench_all
from refrag_agent.bench.common import BENCH_NAMES
from refrag_agent.bench.plots import FIGURES
from refrag_agent.bench.summary import (
    APPEND_TARGET,
    EM_TARGET,
    GAP_TARGET,
    PPL_TARGET,
    SERVE_TARGET,
    TARGETS,
    TITLES,
    TTFT_TARGET,
    UNREADABLE,
    judge,
    render_summary,
)
from refrag_agent.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
REPLAYED = ("policies", "quality")  # their real benchmarks need the trained bundled model
TINY: dict[str, dict[str, Any]] = {
    "latency": {"contexts": [64, 128], "ks": [8, 16, 32], "repeats": 1},
    "store": {"sizes": [256]},
    "policies": {"n_examples": 2},
    "quality": {"n_examples": 2},
    "serve": {"context_tokens": 64, "max_tokens": 2, "rounds": 1, "levels": [1, 2]},
}


def fixture(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return payload


def replay(name: str, calls: dict[str, dict[str, Any]]) -> bench_all.BenchFn:
    """A benchmark that returns its fixture payload and records how it was called."""

    def run(**kwargs: Any) -> dict[str, Any]:
        calls[name] = kwargs
        return fixture(name)

    return run


def fail(**kwargs: Any) -> dict[str, Any]:
    raise RuntimeError("disk on fire")


def test_tiny_run_writes_json_plots_and_page(tmp_path: Path) -> None:
    calls: dict[str, dict[str, Any]] = {}
    benches = {
        name: replay(name, calls) if name in REPLAYED else bench_all.BENCHES[name]
        for name in BENCH_NAMES
    }
    run = bench_all.run_all(tmp_path, quick=True, sizing=TINY, benches=benches)

    assert run.ok and run.page == tmp_path / "SUMMARY.md"
    assert calls["policies"] == {"quick": True, "json_path": None, "n_examples": 2}
    record = json.loads((tmp_path / "all.json").read_text())
    assert record["benchmark"] == "all" and record["quick"] is True
    assert record["sizing"] == TINY
    assert {r["status"] for r in record["results"].values()} == {"ok"}
    for name in BENCH_NAMES:
        payload = json.loads((tmp_path / f"{name}.json").read_text())
        assert payload["benchmark"] == name and payload["date"] and payload["command"]
        machine = payload["machine"]
        assert machine["cores"] >= 1 and machine["torch"] and machine["torch_threads"] >= 1
        # The summary reads every field it needs from the payload: none may be missing.
        assert len(judge(name, payload)) == len(TARGETS[name])
    latency = json.loads((tmp_path / "latency.json").read_text())
    assert [(r["context_tokens"], r["k"]) for r in latency["rows"]] == [
        (n, k) for n in (64, 128) for k in (8, 16, 32)
    ]
    store = json.loads((tmp_path / "store.json").read_text())
    assert store["quick"] is True and [s["chunks"] for s in store["sizes"]] == [1024]
    for name in FIGURES:
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000

    page = run.page.read_text()
    assert UNREADABLE not in page
    assert "in quick mode" in page
    assert all(TITLES[name] in page for name in BENCH_NAMES)
    assert f"**Not measured**: {TTFT_TARGET} (the longest context run was 128)" in page
    assert "the largest store was 1,024 chunks" in page
    assert "this run used 64-token contexts" in page
    assert "![latency plot](./latency.png)" in page and "![store plot](./store.png)" in page


def test_summary_turns_payloads_into_the_page() -> None:
    payloads = {name: fixture(name) for name in BENCH_NAMES}
    page = render_summary(payloads, plots={"latency": "results/latency.png"})

    assert UNREADABLE not in page and "Not run" not in page
    # Tables, with the target row in bold.
    assert "| **16,384** | **16** | **31,127 ms** | **747 ms** | **41.7x** |" in page
    assert "| 1,000,000 | 15.6 / 20.1 ms | 16.7 / 21.3 ms | 63.1 / 82.6 ms |" in page
    assert "| **learned** | **74.0%** | **78.0%** |" in page
    assert "| REFRAG k=16 | 16 | 0 | 2.500 | 12.18 | +0.500 |" in page
    assert "| compressed | 16 | 64 |" in page
    assert "![latency plot](results/latency.png)" in page
    # The paper's figures beside ours.
    assert "16.53x cached, 8.59x uncached. Ours: 41.7x cached, 7.5x uncached" in page
    assert "Paper: throughput up to 6.78x over LLaMA. Ours: up to 5.10x." in page
    # One line per target: met, or short by how much.
    assert f"**Met**: {TTFT_TARGET}. Ours: 41.7x." in page
    assert f"**Short of target by 17.4 ms**: {APPEND_TARGET.format(50)}. Ours: 67.4 ms." in page
    assert "**Short of target by 32.6 ms**: Hybrid search across a tenant" in page
    assert "**Short of target by 2.0 points of exact match behind similarity at p = 0.25**" in page
    assert "11 of 12 comparisons won or tied" in page  # none and oracle are not heuristics
    assert f"**Met**: {GAP_TARGET}. Ours: 90.0% closed." in page
    assert f"**Met**: {PPL_TARGET}." in page
    assert f"**Short of target by 15.0 points**: {EM_TARGET}. Ours: 75.0% of full context." in page
    assert f"**Short of target by 1.68x**: {SERVE_TARGET}. Ours: 5.10x." in page
    assert "| store | ok | - | 2 met, 2 short |" in page
    assert "Command not recorded." in page  # the store fixture predates the run header


def test_unreadable_payload_keeps_the_rest_of_the_page() -> None:
    broken = {**fixture("latency"), "rows": [{"context_tokens": 2048}]}
    page = render_summary({"latency": broken, "store": fixture("store")})
    assert f"{UNREADABLE} `latency.json`: KeyError" in page
    assert "| latency | unreadable |" in page and "| store | ok |" in page
    assert "| quality | not run | - | 0 of 4 measured |" in page


def test_failing_bench_is_recorded_and_the_others_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, dict[str, Any]] = {}
    benches = {name: replay(name, calls) for name in BENCH_NAMES}
    benches["store"] = fail
    monkeypatch.setattr(bench_all, "BENCHES", benches)
    monkeypatch.setattr(bench_all, "SIZING", {"quick": {}, "full": {}})
    (tmp_path / "store.json").write_text(json.dumps(fixture("store")))  # an older result

    assert main(["bench", "all", "--quick", "--out", str(tmp_path)]) == 1

    assert set(calls) == set(BENCH_NAMES) - {"store"}
    record = json.loads((tmp_path / "all.json").read_text())
    store = record["results"]["store"]
    assert store["status"] == "failed" and store["error"] == "RuntimeError: disk on fire"
    assert "Traceback" in store["traceback"]
    assert all((tmp_path / f"{name}.json").exists() for name in calls)
    page = (tmp_path / "SUMMARY.md").read_text()
    assert (
        "| store | failed |" in page
        and "Failed: `RuntimeError: disk on fire`. The traceback is in `all.json`." in page
    )
    assert "15.6 / 20.1 ms" not in page  # the older store.json is not shown as this run's
    assert "| latency | ok |" in page


def test_summary_from_a_folder_with_two_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    for name in ("latency", "store"):
        shutil.copy(FIXTURES / f"{name}.json", results)
    out = tmp_path / "BENCHMARKS.md"

    assert main(["bench", "summary", "--from", str(results), "--out", str(out), "--plots"]) == 0

    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    for name in ("policies", "quality", "serve"):
        assert f"| {name} | not run |" in page
        assert f"Not run: there is no `{name}.json` in the results folder." in page
    assert "![latency plot](results/latency.png)" in page
    assert (results / "store.png").stat().st_size > 0
    assert not (results / "policies.png").exists()
    assert main(["bench", "summary", "--from", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_plot_records_machine_model_date_and_command(name: str) -> None:
    payload = fixture(name)
    figure = FIGURES[name](payload)
    [text] = [t.get_text() for t in figure.texts if t.get_text().startswith("Machine:")]
    flat = " ".join(text.split())
    assert "2 cores" in flat
    if name == "store":  # recorded before the run header existed
        assert "date not recorded" in flat and "command not recorded" in flat
    else:
        assert "torch 2.13.0+cpu" in flat and "2 threads" in flat and "2026-11-23" in flat
        assert payload["model"].get("name", "random Llama") in flat
        assert payload["command"] in flat
