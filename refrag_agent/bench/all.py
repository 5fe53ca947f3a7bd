"""``refrag-agent bench all`` and ``bench summary``: every benchmark, its plots and one page.

A results folder holds:

- ``<name>.json``: the payload of benchmark ``name`` (latency, store, policies, quality,
  serve), as its ``run_<name>_bench`` returned it;
- ``all.json``: the run itself: its header (command, machine, date), the mode, the sizing
  each benchmark got, and each benchmark's status, run time, error and traceback;
- ``<name>.png``: the plots drawn from those payloads (:mod:`refrag_agent.bench.plots`);
- ``SUMMARY.md``: the page (:mod:`refrag_agent.bench.summary`).

A benchmark that raises is recorded in ``all.json`` and on the page, and the others still
run; the command then exits non-zero. When ``all.json`` records a failure, the page reports
that failure even if an older ``<name>.json`` is still in the folder.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from refrag_agent.bench.common import BENCH_NAMES, run_header, write_json
from refrag_agent.bench.plots import FIGURES, plot_path, write_plot
from refrag_agent.bench.summary import render_summary
from refrag_agent.errors import InvalidInput
from refrag_agent.logs import get_logger

log = get_logger(__name__)

BenchFn = Callable[..., dict[str, Any]]
"""``run_<name>_bench(*, quick, json_path, **sizing)``: returns the payload."""

Sizing = Mapping[str, Mapping[str, Any]]
"""Benchmark name -> the keyword arguments it gets besides ``quick`` and ``json_path``."""

Mode = Literal["quick", "full"]

# Estimated minutes on 2 cores, from earlier runs' JSON: latency ~1.5 quick, ~6 full; store
# ~0.5 quick, ~7 full. An empty entry leaves the sizing to the benchmark's own quick or full
# defaults. Values must be plain JSON: all.json records them.
SIZING: dict[Mode, dict[str, dict[str, Any]]] = {
    "quick": {
        "latency": {"contexts": (1024, 2048, 4096, 8192), "ks": (8, 16, 32), "repeats": 2},
        "store": {"sizes": (2_000, 10_000)},
        "policies": {},
        "quality": {},
        "serve": {},
    },
    "full": {
        "latency": {"contexts": (1024, 2048, 4096, 8192, 16_384), "ks": (8, 16, 32), "repeats": 5},
        "store": {"sizes": (10_000, 100_000, 1_000_000)},
        "policies": {},
        "quality": {},
        "serve": {},
    },
}
"""How big each benchmark runs in each mode: the one place to resize ``bench all``."""

RUN_FILE = "all.json"
PAGE_FILE = "SUMMARY.md"


def _entry_point(name: str) -> BenchFn:
    """``run_<name>_bench``, imported when called: a missing module fails only that bench."""

    def run(**kwargs: Any) -> dict[str, Any]:
        module = importlib.import_module(f"refrag_agent.bench.{name}")
        bench: BenchFn = getattr(module, f"run_{name}_bench")
        return bench(**kwargs)

    return run


BENCHES: dict[str, BenchFn] = {name: _entry_point(name) for name in BENCH_NAMES}
"""The benchmarks ``bench all`` runs, in order."""


@dataclass(frozen=True)
class AllRun:
    """What ``bench all`` did: the run record written to ``all.json`` and the page."""

    record: dict[str, Any]
    page: Path

    @property
    def failed(self) -> list[str]:
        """Benchmarks that raised, or whose plot could not be drawn."""
        return [
            name
            for name, status in self.record["results"].items()
            if status["status"] != "ok" or "plot_error" in status
        ]

    @property
    def ok(self) -> bool:
        return not self.failed


def run_all(
    out_dir: Path,
    *,
    quick: bool,
    sizing: Sizing | None = None,
    benches: Mapping[str, BenchFn] | None = None,
) -> AllRun:
    """Run ``benches`` (default: all five) in order, then write JSON, plots and the page.

    ``sizing`` defaults to :data:`SIZING` for the mode; tests pass a tiny profile.
    """
    sizing = SIZING["quick" if quick else "full"] if sizing is None else sizing
    benches = BENCHES if benches is None else benches
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        **run_header("all"),
        "quick": quick,
        "sizing": {name: dict(sizing.get(name, {})) for name in benches},
        "results": {},
    }
    bar = tqdm(list(benches), desc="bench all", unit="bench")
    for name in bar:
        bar.set_postfix_str(name)
        started = time.perf_counter()
        status: dict[str, Any]
        try:
            payload = benches[name](quick=quick, json_path=None, **sizing.get(name, {}))
            write_json(out_dir / f"{name}.json", payload)
        # One benchmark's failure, whatever it is, must not lose the others' results.
        except Exception as e:
            log.error("benchmark failed", bench=name, exc_info=True)
            status = {
                "status": "failed",
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
            }
        else:
            status = {"status": "ok"}
            try:
                write_plot(name, payload, out_dir)
            except Exception as e:
                log.error("plot failed", bench=name, exc_info=True)
                status["plot_error"] = f"{type(e).__name__}: {e}"
        status["elapsed_s"] = round(time.perf_counter() - started, 1)
        record["results"][name] = status
    bar.close()
    write_json(out_dir / RUN_FILE, record)
    return AllRun(record=record, page=write_page(out_dir))


def write_page(results: Path, page: Path | None = None, *, redraw: bool = False) -> Path:
    """Render the page for the results folder ``results`` into ``page`` (default: its
    ``SUMMARY.md``); ``redraw`` draws the plots again from the JSON first."""
    if not results.is_dir():
        raise InvalidInput("no such results folder", path=str(results))
    page = page or results / PAGE_FILE
    run = _read_json(results / RUN_FILE)
    statuses = run["results"] if run else {}
    payloads: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for name in BENCH_NAMES:
        if statuses.get(name, {}).get("status") == "failed":
            errors[name] = statuses[name]["error"]
            continue
        try:
            payload = _read_json(results / f"{name}.json")
        except (OSError, json.JSONDecodeError) as e:
            errors[name] = f"unreadable {name}.json: {e}"
            continue
        if payload is not None:
            payloads[name] = payload
    if redraw:
        for name, payload in payloads.items():
            write_plot(name, payload, results)
    link = Path(os.path.relpath(results, page.parent)).as_posix()
    plots = {
        name: f"{link}/{plot_path(results, name).name}"
        for name in payloads
        if name in FIGURES and plot_path(results, name).exists()
    }
    text = render_summary(payloads, errors=errors, run=run, plots=plots, results_link=link)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text, encoding="utf-8")
    return page


def _read_json(path: Path) -> dict[str, Any] | None:
    """The object in ``path``; None when there is no such file."""
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def run_bench_command(args: argparse.Namespace) -> int:
    """``bench all`` and ``bench summary`` from parsed CLI arguments; the exit status."""
    if args.bench == "all":
        run = run_all(args.out, quick=args.quick)
        for name in run.failed:
            status = run.record["results"][name]
            print(f"{name}: {status.get('error') or status.get('plot_error')}")
        print(f"wrote {run.page}")
        return 0 if run.ok else 1
    page = write_page(args.source, args.out, redraw=args.plots)
    print(f"wrote {page}")
    return 0
