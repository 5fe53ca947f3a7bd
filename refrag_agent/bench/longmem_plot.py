"""The plot of ``bench longmem``: each arm's score against the positions it fed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.figure import Figure

from refrag_agent.bench.plots import _figure

ARM_STYLE = {
    "refrag": ("tab:orange", "o"),
    "truncation": ("tab:blue", "s"),
    "rag": ("tab:green", "^"),
    "none": ("gray", "x"),
}


def longmem_figure(payload: Mapping[str, Any]) -> Figure:
    """Mean F1 and exact match against mean positions fed, one point per arm."""
    data = payload["data"]
    title = f"{data['format']} {data['name']}: score against positions fed (n={data['questions']})"
    fig, (f1, em) = _figure(payload, title, 2)
    for arm, row in payload["rows"].items():
        color, marker = ARM_STYLE.get(arm, ("black", "o"))
        for ax, key in ((f1, "f1"), (em, "exact")):
            ax.scatter([row["positions_fed"]], [row[key]], color=color, marker=marker, s=60)
            ax.annotate(
                arm,
                (row["positions_fed"], row[key]),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
            )
    for ax, label in ((f1, "token F1"), (em, "exact match")):
        ax.set_xlabel("decoder positions fed (mean)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    return fig
