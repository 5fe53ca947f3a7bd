"""``python -m refrag_agent.training``: the train command, for ``accelerate launch -m``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
from transformers.utils import logging as hf_logging

from refrag_agent.errors import RefragError
from refrag_agent.training.loop import run_train


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refrag_agent.training")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--stage", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/train"))
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # An entry point, like the CLI: it configures logging; progress bars stay on.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        summary = run_train(
            preset=args.preset,
            stage=args.stage,
            resume=args.resume,
            out_dir=args.out_dir,
            max_steps=args.max_steps,
        )
    except RefragError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
