"""The ``refrag-agent`` command: demo and benchmarks.

The CLI is the only place that configures logging and progress output.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog


def _configure() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refrag-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="answer questions over a long scripted conversation")
    demo.add_argument("--p", type=float, default=0.1, help="fraction of chunks to expand")
    demo.add_argument("--max-new-tokens", type=int, default=24)

    bench = sub.add_parser("bench", help="run a benchmark; prints figures, writes JSON")
    which = bench.add_subparsers(dest="bench", required=True)
    for name, text in (
        ("latency", "TTFT and KV cache: full tokens vs compressed chunks"),
        ("store", "memory store: append, fetch and search latency"),
    ):
        b = which.add_parser(name, help=text)
        b.add_argument("--quick", action="store_true", help="short run")
        b.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure()
    from refrag_agent.errors import RefragError

    try:
        if args.command == "demo":
            from refrag_agent.budget import Budget
            from refrag_agent.demo import run_demo

            run_demo(budget=Budget(p=args.p), max_new_tokens=args.max_new_tokens)
        elif args.bench == "latency":
            from refrag_agent.bench.latency import run_latency_bench

            run_latency_bench(quick=args.quick, json_path=args.json)
        else:
            from refrag_agent.bench.store import run_store_bench

            run_store_bench(quick=args.quick, json_path=args.json)
    except RefragError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
