"""PNG plots of benchmark payloads, drawn with matplotlib's Agg backend (no display needed).

Every figure carries a footer with the machine, model, date and command of the payload it
was drawn from, so a plot copied out of its folder still says where it came from.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from refrag_agent.bench.common import provenance
from refrag_agent.bench.summary import LEARNED, STORE_LIMIT_MS

FOOTER_CHARS_PER_INCH = 16  # at the footer's font size, so a footer line fits its figure
K_COLORS = {8: "tab:blue", 16: "tab:orange", 32: "tab:green"}


def footer(payload: Mapping[str, Any], width: int = 96) -> str:
    """The provenance printed under every figure, wrapped at ``width`` characters."""
    where = provenance(payload)
    text = (
        f"Machine: {where['machine']}.  Model: {where['model']}.  Date: {where['date']}.  "
        f"Command: {where['command']}"
    )
    lines = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)


def _figure(payload: Mapping[str, Any], title: str, n_axes: int) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(6 * n_axes, 4.8))
    FigureCanvasAgg(fig)  # the Agg canvas renders the PNG
    axes = [fig.add_subplot(1, n_axes, i + 1) for i in range(n_axes)]
    text = footer(payload, width=6 * n_axes * FOOTER_CHARS_PER_INCH)
    lines = text.count("\n") + 1
    fig.suptitle(title)
    fig.subplots_adjust(bottom=0.14 + 0.035 * lines, wspace=0.3)
    fig.text(0.01, 0.01, text, fontsize=7, ha="left", va="bottom", color="dimgray")
    return fig, axes


def latency_figure(payload: Mapping[str, Any]) -> Figure:
    """TTFT and KV-cache size against context length, per k, with the full-context baseline."""
    rows = payload["rows"]
    contexts = sorted({r["context_tokens"] for r in rows})
    full = {r["context_tokens"]: r for r in rows}  # the full-context figures repeat per k
    fig, (ttft, kv) = _figure(payload, "Time to first token and KV cache vs context length", 2)
    ttft.plot(contexts, [full[n]["full_ttft_ms"] for n in contexts], "k-o", label="full context")
    kv.plot(
        contexts, [full[n]["kv_bytes_full"] / 2**20 for n in contexts], "k-o", label="full context"
    )
    for k in sorted({r["k"] for r in rows}):
        mine = sorted((r for r in rows if r["k"] == k), key=lambda r: r["context_tokens"])
        n = [r["context_tokens"] for r in mine]
        color = K_COLORS.get(k)
        ttft.plot(n, [r["compressed_ttft_ms"] for r in mine], "-o", color=color, label=f"k = {k}")
        ttft.plot(
            n,
            [r["uncached_ttft_ms"] for r in mine],
            "--",
            color=color,
            label=f"k = {k}, uncached",
        )
        kv.plot(
            n, [r["kv_bytes_compressed"] / 2**20 for r in mine], "-o", color=color, label=f"k = {k}"
        )
    for ax, ylabel in ((ttft, "TTFT (ms)"), (kv, "KV cache (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(contexts, [f"{n:,}" for n in contexts])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("context tokens")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def store_figure(payload: Mapping[str, Any]) -> Figure:
    """Fetch and search latency (p50 and p95) against the number of chunks stored."""
    sizes = sorted(payload["sizes"], key=lambda s: s["chunks"])
    chunks = [s["chunks"] for s in sizes]
    fig, (ax,) = _figure(payload, "Memory store latency vs size", 1)
    series = (
        ("fetch 1,024 chunks", lambda s: s["fetch_1024"], "tab:blue"),
        ("search, session", lambda s: s["search_hybrid"]["session"], "tab:orange"),
        ("search, tenant", lambda s: s["search_hybrid"]["tenant"], "tab:green"),
    )
    for label, pick, color in series:
        ax.plot(chunks, [pick(s)["p95_ms"] for s in sizes], "-o", color=color, label=f"{label} p95")
        ax.plot(chunks, [pick(s)["p50_ms"] for s in sizes], ":", color=color, label=f"{label} p50")
    limit = payload.get("targets_ms", {}).get("search_p95_at_1M", STORE_LIMIT_MS)
    ax.axhline(limit, color="red", linestyle="--", linewidth=1, label=f"target {limit} ms")
    ax.set_xscale("log")
    ax.set_xlabel("chunks stored")
    ax.set_ylabel("latency (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def policies_figure(payload: Mapping[str, Any]) -> Figure:
    """Memory QA accuracy and text log-perplexity against the expansion fraction, per policy."""
    fig, axes = _figure(payload, "Expansion policies vs expansion budget", 2)
    for ax, key, ylabel in (
        (axes[0], "memory_qa", "memory QA exact match"),
        (axes[1], "text", "text log-perplexity"),
    ):
        block = payload[key]
        for policy in payload["policies"]:
            mine = sorted((r for r in block["rows"] if r["policy"] == policy), key=lambda r: r["p"])
            if mine:  # the oracle, for one, has no text rows
                style = "-o" if policy == LEARNED else "--."
                ax.plot([r["p"] for r in mine], [r["value"] for r in mine], style, label=policy)
        for bound, label in (("full", "full context"), ("none", "no expansion")):
            ax.axhline(block["bounds"][bound], color="gray", linestyle=":", linewidth=1)
            ax.annotate(
                label,
                (0, block["bounds"][bound]),
                xycoords=("axes fraction", "data"),
                fontsize=7,
                color="gray",
                va="bottom",
            )
        better = "lower" if block["lower_is_better"] else "higher"
        ax.set_xticks(payload["ps"])
        ax.set_xlabel("expansion fraction p")
        ax.set_ylabel(f"{ylabel} ({better} is better)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return fig


FIGURES: dict[str, Callable[[Mapping[str, Any]], Figure]] = {
    "latency": latency_figure,
    "store": store_figure,
    "policies": policies_figure,
}
"""The benchmarks that have a plot, and the function that draws it."""


def plot_path(out_dir: Path, name: str) -> Path:
    """Where benchmark ``name``'s plot lives in a results folder."""
    return out_dir / f"{name}.png"


def write_plot(name: str, payload: Mapping[str, Any], out_dir: Path) -> Path | None:
    """Draw ``name``'s plot into ``out_dir``; None for a benchmark without one."""
    draw = FIGURES.get(name)
    if draw is None:
        return None
    path = plot_path(out_dir, name)
    draw(payload).savefig(path, dpi=110)
    return path
