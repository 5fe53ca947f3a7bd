"""The record of one decoder call: what was laid out where, what was expanded, what it cost.

Every reply carries its :class:`ContextPlan`; the agent logs it (event ``refrag.plan``) and
keeps it in a :class:`PlanLog`, so any answer can be explained and replayed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from refrag_agent.timeline import Scope, SegmentKind


class SegmentUse(BaseModel):
    """One segment placed in the prompt: where, and how it got there."""

    model_config = ConfigDict(frozen=True)

    segment_id: str
    kind: SegmentKind
    domain: str
    seq: int
    position: int  # first decoder position of the segment in the prompt
    n_chunks: int
    n_tokens: int
    retrieved: bool = False  # chosen by retrieval rather than recency
    pinned: bool = False


class ChunkDecision(BaseModel):
    """One chunk: expanded into tokens or fed as one embedding, and the policy's score."""

    model_config = ConfigDict(frozen=True)

    segment_id: str
    index: int
    expanded: bool
    score: float
    n_tokens: int


class ContextPlan(BaseModel):
    """The layout and cost of one decoder call."""

    model_config = ConfigDict(frozen=True)

    scope: Scope
    query: str
    policy: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    segments: list[SegmentUse]
    chunks: list[ChunkDecision]
    spend_per_domain: dict[str, int]  # expanded tokens per domain (pinned ones excluded)
    tokens_held: int  # tokens the laid-out context stands for
    positions_fed: int  # decoder positions actually used
    chunks_expanded: int
    chunks_compressed: int
    effective_compression: float  # tokens held / positions fed
    segments_left_in_store: int = 0  # older segments that did not fit and were not retrieved
    ttft_s: float = 0.0
    tokens_per_s: float = 0.0
    finish_reason: str = ""


class PlanLog:
    """Plans kept as JSON lines in one file, appended as replies are made."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, plan: ContextPlan) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(plan.model_dump_json() + "\n")

    def read(self, scope: Scope | None = None, *, last: int | None = None) -> list[ContextPlan]:
        plans = [p for p in self._all() if scope is None or p.scope == scope]
        return plans[-last:] if last else plans

    def _all(self) -> Iterator[ContextPlan]:
        if not self.path.is_file():
            return
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield ContextPlan.model_validate(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a crash: skip it, keep the rest
