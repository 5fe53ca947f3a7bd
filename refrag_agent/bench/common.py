"""What every benchmark records: the machine, the command, the date; and robust summaries."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_NAMES = ("latency", "store", "policies", "quality", "serve")
"""The benchmarks ``refrag-agent bench all`` runs, in order; each is ``run_<name>_bench``."""


def machine_info() -> dict[str, Any]:
    """Cores, threads, versions: printed next to every figure so it can be reproduced."""
    import torch

    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run_header(name: str) -> dict[str, Any]:
    """The fields every payload starts with: benchmark, date, command, machine."""
    return {
        "benchmark": name,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["refrag-agent", *sys.argv[1:]]) if sys.argv else "",
        "machine": machine_info(),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True), encoding="utf-8")


def describe_machine(machine: Mapping[str, Any]) -> str:
    """One line: cores, torch version, threads; what an older payload lacks is left out."""
    parts = []
    cores = machine.get("cores", machine.get("cpus"))
    if cores is not None:
        processor = machine.get("processor")
        parts.append(f"{cores} cores" + (f" ({processor})" if processor else ""))
    if machine.get("torch"):
        parts.append(f"torch {machine['torch']}")
    threads = machine.get("torch_threads")
    if threads is not None:
        parts.append(f"{threads} thread{'' if threads == 1 else 's'}")
    if machine.get("cuda"):
        parts.append(str(machine["cuda"]))
    return ", ".join(parts) or "machine not recorded"


def describe_model(payload: Mapping[str, Any]) -> str:
    """One line naming the payload's model: name, size and whatever shape it records."""
    model = payload.get("model")
    if not model:
        return "no decoder"
    parts = [str(model.get("name") or model.get("decoder") or "unnamed model")]
    params = model.get("params", model.get("parameters"))
    if params:
        parts.append(f"{params / 1e6:.1f}M parameters")
    for key, label in (
        ("layers", "{} layers"),
        ("hidden_size", "width {}"),
        ("dtype", "{}"),
        ("k", "k = {}"),
        ("encoder", "encoder {}"),
    ):
        if model.get(key) is not None:
            parts.append(label.format(model[key]))
    return ", ".join(parts)


def provenance(payload: Mapping[str, Any]) -> dict[str, str]:
    """Machine, model, date and command of one payload, as printable strings."""
    return {
        "machine": describe_machine(payload.get("machine") or {}),
        "model": describe_model(payload),
        "date": str(payload["date"])[:10] if payload.get("date") else "date not recorded",
        "command": str(payload.get("command") or "command not recorded"),
    }
