"""The ``refrag-agent`` command: demo, chat, inspect, train and benchmarks.

The CLI is the only place that configures logging and progress output.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog


def _configure(verbose: bool) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    level = logging.INFO if verbose else logging.WARNING
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refrag-agent", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log plans and store events")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="answer questions over a long scripted conversation")
    demo.add_argument("--model", default=None, help="checkpoint directory (default: bundled)")
    demo.add_argument("--memory", type=Path, default=None, help="memory folder (default: fresh)")
    demo.add_argument("--p", type=float, default=0.1, help="fraction of chunks to expand")
    demo.add_argument("--max-new-tokens", type=int, default=24)

    chat = sub.add_parser("chat", help="an interactive session with persistent memory")
    inspect = sub.add_parser("inspect", help="show a session's timeline and recent plans")
    for p in (chat, inspect):
        p.add_argument("--memory", type=Path, default=Path("./agent-memory"))
        p.add_argument("--tenant", default="local")
        p.add_argument("--session", default="chat")
    chat.add_argument("--model", default=None, help="checkpoint directory (default: bundled)")
    chat.add_argument("--p", type=float, default=0.1, help="fraction of chunks to expand")
    inspect.add_argument("--last", type=int, default=5, help="how many recent plans")

    train = sub.add_parser("train", help="train a preset's stages (docs/training.md)")
    train.add_argument("--preset", default="tiny", help="tiny (bundled default), smoke, llama-gpu")
    train.add_argument("--stage", choices=["pretrain", "reconstruct", "cpt", "sft", "rl"])
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument("--out-dir", type=Path, default=Path("runs/train"))
    train.add_argument("--max-steps", type=int, default=None, help="stop each stage early")

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
    _configure(args.verbose)
    from refrag_agent.errors import RefragError

    try:
        if args.command == "demo":
            from refrag_agent.budget import Budget
            from refrag_agent.demo import run_demo

            asyncio.run(
                run_demo(
                    model=args.model,
                    memory=args.memory,
                    budget=Budget(p=args.p),
                    max_new_tokens=args.max_new_tokens,
                )
            )
        elif args.command == "chat":
            from refrag_agent.budget import Budget
            from refrag_agent.console import run_chat

            asyncio.run(
                run_chat(
                    model=args.model,
                    memory=args.memory,
                    tenant=args.tenant,
                    session=args.session,
                    budget=Budget(p=args.p),
                )
            )
        elif args.command == "inspect":
            from refrag_agent.console import run_inspect

            asyncio.run(
                run_inspect(
                    memory=args.memory, tenant=args.tenant, session=args.session, last=args.last
                )
            )
        elif args.command == "train":
            from refrag_agent.training import run_train

            run_train(
                preset=args.preset,
                stage=args.stage,
                resume=args.resume,
                out_dir=args.out_dir,
                max_steps=args.max_steps,
            )
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
