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

from refrag_agent import __version__
from refrag_agent.budget import Budget
from refrag_agent.errors import RefragError


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
    parser.add_argument("--version", action="version", version=f"refrag-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log plans and store events")
    sub = parser.add_subparsers(dest="command", required=True, help="what to run")

    demo = sub.add_parser("demo", help="answer questions over a long scripted conversation")
    demo.add_argument("--model", default=None, help="checkpoint directory (default: bundled)")
    demo.add_argument("--memory", type=Path, default=None, help="memory folder (default: fresh)")
    demo.add_argument("--p", type=float, default=0.1, help="fraction of chunks to expand")
    demo.add_argument("--max-new-tokens", type=int, default=24, help="answer length cap")
    demo.add_argument(
        "--no-full-tokens",
        action="store_true",
        help="skip the full-token baseline (tens of seconds of prefill on a CPU)",
    )

    chat = sub.add_parser("chat", help="an interactive session with persistent memory")
    inspect = sub.add_parser("inspect", help="show a session's timeline and recent plans")
    for p in (chat, inspect):
        p.add_argument(
            "--memory",
            type=Path,
            default=Path("./agent-memory"),
            help="memory folder (default: ./agent-memory)",
        )
        p.add_argument("--tenant", default="local", help="tenant name (default: local)")
        p.add_argument("--session", default="chat", help="session name (default: chat)")
    chat.add_argument("--model", default=None, help="checkpoint directory (default: bundled)")
    chat.add_argument("--p", type=float, default=0.1, help="fraction of chunks to expand")
    inspect.add_argument("--last", type=int, default=5, help="how many recent plans")

    sub.add_parser("prepare", help="convert the base decoder once into the local cache")

    train = sub.add_parser("train", help="train a preset's stages (docs/training.md)")
    train.add_argument(
        "--preset",
        default="tiny",
        help="smol (the embedded default's recipe), smol-gpu, tiny (from scratch; the "
        "default here), smoke, llama-gpu",
    )
    train.add_argument(
        "--stage",
        choices=["pretrain", "reconstruct", "cpt", "sft", "rl"],
        help="run only this stage (default: every stage of the preset)",
    )
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument(
        "--out-dir", type=Path, default=Path("runs/train"), help="run folder (default: runs/train)"
    )
    train.add_argument("--max-steps", type=int, default=None, help="stop each stage early")
    train.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --stage: start from this model directory (e.g. an exported one)",
    )
    export = sub.add_parser("export", help="a finished run's model, policy and recipe as one dir")
    export.add_argument("run_dir", type=Path, help="the run's --out-dir")
    export.add_argument("dest", type=Path, help="the model directory to write")

    serve = sub.add_parser("serve", help="an OpenAI-compatible server (docs/serve.md)")
    serve.add_argument("--model", default=None, help="checkpoint directory (default: bundled)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument(
        "--api-key",
        action="append",
        metavar="KEY[:TENANT,...]",
        help="require 'Authorization: Bearer KEY'; repeat for several keys; with tenants, the "
        "key reads only their memory (default: $REFRAG_AGENT_API_KEY, same form)",
    )
    serve.add_argument("--memory", type=Path, default=None, help="a store requests may refer to")
    serve.add_argument("--name", default=None, help="model name clients send (default: dir name)")
    serve.add_argument("--max-batch", type=int, default=16, help="rows decoded together")
    serve.add_argument("--max-queue", type=int, default=64, help="requests waiting for a row")
    serve.add_argument("--max-tokens", type=int, default=1024, help="largest max_tokens")
    serve.add_argument("--max-request-s", type=float, default=300.0, help="time per request")
    serve.add_argument(
        "--max-receive-s",
        type=float,
        default=60.0,
        help="time a client has to send a request's headers, and again its body",
    )
    serve.add_argument(
        "--budget-p",
        type=float,
        default=None,
        help="default expansion budget of requests that name none, as a fraction of chunks",
    )
    serve.add_argument(
        "--budget-tokens",
        type=int,
        default=None,
        help="default expansion budget of requests that name none, in tokens",
    )

    bench = sub.add_parser("bench", help="run a benchmark; prints figures, writes JSON")
    which = bench.add_subparsers(dest="bench", required=True, help="which benchmark")
    for name, text in (
        ("latency", "TTFT and KV cache: full tokens vs compressed chunks"),
        ("store", "memory store: append, fetch and search latency"),
        ("soak", "memory store under a long run: latency, RSS, handles, versions"),
        ("serve", "serving: TTFT and throughput, compressed vs full context"),
        ("quality", "log-perplexity and memory-QA exact match (the paper's table 1)"),
        ("policies", "expansion-policy ablation over budgets p"),
    ):
        b = which.add_parser(name, help=text)
        b.add_argument("--quick", action="store_true", help="short run")
        b.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")
    for name in ("quality", "policies"):
        b = which.choices[name]
        b.add_argument("--model", default=None, help="checkpoint directory (default: bundled)")
        b.add_argument(
            "--qa-set",
            choices=("natural", "templates"),
            default=None,
            help="held-out QA: natural dialogues + hand-written (default for ChatML models) "
            "or the templated tasks (default for the tiny model)",
        )
        b.add_argument(
            "--prose",
            choices=("manpages", "stdlib"),
            default=None,
            help="held-out text: manual pages (default for ChatML models) or the corpus's "
            "held-out files",
        )
        b.add_argument(
            "--n",
            type=int,
            default=None,
            metavar="N",
            help="text windows and generated questions (quality asks every hand-written "
            "question, policies N of them)",
        )
        b.add_argument(
            "--qa-chunks",
            type=int,
            default=None,
            metavar="N",
            help="generated conversations of about N chunks of 16 tokens (default 8; the "
            "hand-written ones keep their own length)",
        )
    served = which.choices["serve"]
    served.add_argument(
        "--in-process",
        action="store_true",
        help="only concurrent sessions of one agent on one in-process engine, against one "
        "call at a time (no HTTP server)",
    )
    served.add_argument(
        "--model",
        default=None,
        help="with --in-process: checkpoint directory, or 'bundled' for the embedded default "
        "(default: a random Llama)",
    )
    served.add_argument(
        "--context-tokens", type=int, default=None, help="tokens of context per session"
    )
    served.add_argument("--max-tokens", type=int, default=None, help="output tokens per call")
    served.add_argument("--rounds", type=int, default=None, help="calls per caller per level")
    served.add_argument(
        "--repeats", type=int, default=None, help="with --in-process: runs of every level"
    )
    latency = which.choices["latency"]
    latency.add_argument(
        "--sdk",
        action="store_true",
        help="through Session.respond on a real model (default: the embedded one)",
    )
    latency.add_argument("--model", default=None, help="with --sdk: checkpoint directory")
    latency.add_argument(
        "--context-tokens", type=int, default=6000, help="with --sdk: tokens in the session"
    )
    latency.add_argument("--repeats", type=int, default=3, help="with --sdk: calls per side")
    longmem = which.add_parser(
        "longmem", help="LoCoMo or LongMemEval: REFRAG vs truncation, RAG, no memory"
    )
    longmem.add_argument("--data", type=Path, required=True, help="the data set's JSON file")
    longmem.add_argument(
        "--format",
        choices=("locomo", "longmemeval"),
        required=True,
        help="the file's schema: LoCoMo (locomo10.json) or LongMemEval",
    )
    longmem.add_argument("--limit", type=int, default=None, metavar="N", help="first N questions")
    longmem.add_argument("--model", default=None, help="checkpoint directory (default: bundled)")
    longmem.add_argument("--p", type=float, default=0.25, help="REFRAG's expanded fraction")
    longmem.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")
    longmem.add_argument("--plot", type=Path, default=None, help="PNG (default: next to --json)")
    every = which.add_parser("all", help="every benchmark, then plots and a summary page")
    every.add_argument("--quick", action="store_true", help="short run (under 10 min, 2 cores)")
    every.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        metavar="DIR",
        help="results folder (default: benchmarks/results)",
    )
    page = which.add_parser("summary", help="write the summary page from a results folder")
    page.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=Path("benchmarks/results"),
        metavar="DIR",
        help="results folder (default: benchmarks/results)",
    )
    page.add_argument("--out", type=Path, default=None, help="page path (default: DIR/SUMMARY.md)")
    page.add_argument("--plots", action="store_true", help="redraw the plots from the JSON first")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure(args.verbose)
    # Each command imports what it runs, for import time: `refrag-agent --help` and a
    # mistyped option load no torch, and a command loads only its own stack.
    try:
        if args.command in ("demo", "chat", "serve") and getattr(args, "model", None) is None:
            from refrag_agent.console import prepare_base

            prepare_base()  # the first run converts the default's base: with a bar, once
        if args.command == "demo":
            from refrag_agent.demo import run_demo

            report = asyncio.run(
                run_demo(
                    model=args.model,
                    memory=args.memory,
                    budget=Budget(p=args.p),
                    max_new_tokens=args.max_new_tokens,
                    full_tokens=not args.no_full_tokens,
                )
            )
            print(report.format())
        elif args.command == "chat":
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
        elif args.command == "prepare":
            from refrag_agent.console import run_prepare

            run_prepare()
        elif args.command == "train":
            from refrag_agent.training import run_train

            run_train(
                preset=args.preset,
                stage=args.stage,
                resume=args.resume,
                out_dir=args.out_dir,
                max_steps=args.max_steps,
                init_from=args.init_from,
            )
        elif args.command == "export":
            from refrag_agent.training.export import export_model

            print(f"exported to {export_model(args.run_dir, args.dest)}")
        elif args.command == "serve":
            from refrag_agent.serve.auth import ApiKey
            from refrag_agent.serve.limits import ServeLimits
            from refrag_agent.serve.server import serve

            given = args.api_key or [os.environ.get("REFRAG_AGENT_API_KEY") or ""]
            keys = [ApiKey.parse(k) for k in given if k]
            print(f"serving on http://{args.host}:{args.port}/v1 (Ctrl-C stops)", flush=True)
            serve(
                args.model,
                budget=Budget(p=args.budget_p, tokens=args.budget_tokens),
                host=args.host,
                port=args.port,
                api_key=keys,
                memory=args.memory,
                name=args.name,
                limits=ServeLimits(
                    max_batch=args.max_batch,
                    max_queue=args.max_queue,
                    max_tokens=args.max_tokens,
                    max_request_s=args.max_request_s,
                    max_receive_s=args.max_receive_s,
                ),
            )
        elif args.bench == "serve":
            sizing = {
                "context_tokens": args.context_tokens,
                "max_tokens": args.max_tokens,
                "rounds": args.rounds,
            }
            if args.in_process:
                from refrag_agent.bench.in_process import run_in_process_bench

                run_in_process_bench(
                    quick=args.quick,
                    json_path=args.json,
                    model=args.model,
                    repeats=args.repeats,
                    **sizing,
                )
            else:
                if args.model is not None or args.repeats is not None:
                    print("error: --model and --repeats go with --in-process", file=sys.stderr)
                    return 2
                from refrag_agent.bench.serve import run_serve_bench

                run_serve_bench(quick=args.quick, json_path=args.json, **sizing)
        elif args.bench in ("quality", "policies"):
            from refrag_agent.bench.evaluation import QA_SIZE
            from refrag_agent.bench.policies import run_policies_bench
            from refrag_agent.bench.quality import run_quality_bench
            from refrag_agent.training.stages import task_size

            run = run_quality_bench if args.bench == "quality" else run_policies_bench
            run(
                quick=args.quick,
                json_path=args.json,
                model=args.model,
                n_examples=args.n,
                qa_set=args.qa_set,
                prose=args.prose,
                qa_size=QA_SIZE if args.qa_chunks is None else task_size(args.qa_chunks),
            )
        elif args.bench == "longmem":
            from tqdm import tqdm

            from refrag_agent.bench.longmem import format_longmem, run_longmem_bench

            plot = args.plot or (args.json.with_suffix(".png") if args.json else None)
            payload = asyncio.run(
                run_longmem_bench(
                    args.data,
                    args.format,
                    model=args.model,
                    limit=args.limit,
                    p=args.p,
                    json_path=args.json,
                    plot_path=plot,
                    progress=lambda n: tqdm(total=n, desc="bench longmem", unit="question").update,
                )
            )
            print(format_longmem(payload))
        elif args.bench in ("all", "summary"):
            from refrag_agent.bench.all import run_bench_command

            return run_bench_command(args)
        elif args.bench == "latency" and args.sdk:
            from refrag_agent.bench.sdk_latency import format_sdk_row, run_sdk_latency_bench

            payload = asyncio.run(
                run_sdk_latency_bench(
                    args.model,
                    context_tokens=args.context_tokens,
                    repeats=args.repeats,
                    json_path=args.json,
                )
            )
            print(format_sdk_row(payload["row"]))
        elif args.bench == "latency":
            from refrag_agent.bench.latency import run_latency_bench

            run_latency_bench(quick=args.quick, json_path=args.json)
        elif args.bench == "soak":
            from refrag_agent.bench.soak import run_soak_bench

            run_soak_bench(quick=args.quick, json_path=args.json)
        else:
            from refrag_agent.bench.store import run_store_bench

            run_store_bench(quick=args.quick, json_path=args.json)
    except RefragError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
