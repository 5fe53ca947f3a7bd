"""The record of one decoder call: what was laid out where, what was expanded, what it cost.

Every reply carries its :class:`ContextPlan`; the agent logs it (event ``refrag.plan``) and
keeps it in a :class:`PlanLog`, so any answer can be explained and replayed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field

from refrag_agent.logs import get_logger
from refrag_agent.timeline import Scope, SegmentKind

log = get_logger(__name__)


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


class DroppedSegment(BaseModel):
    """A segment of the timeline left out of the prompt, and why.

    ``window``: it did not fit the room left after the pins, the newest turns and the
    segments retrieval ranked above it; ``tool_pair``: it fitted, but the other half of its
    tool call/output pair did not, and a pair goes in whole or not at all; ``left_out``:
    it fitted, but ``Budget(unexpanded="left_out")`` fed none of its chunks.
    """

    model_config = ConfigDict(frozen=True)

    segment_id: str
    kind: SegmentKind
    seq: int
    positions: int  # what it would have cost unexpanded, frame included
    reason: Literal["window", "tool_pair", "left_out"]


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
    dropped: list[DroppedSegment] = Field(default_factory=list)  # those segments, oldest first
    ttft_s: float = 0.0
    tokens_per_s: float = 0.0
    finish_reason: str = ""


class PlanLog:
    """Plans kept as JSON lines in one file, appended as replies are made.

    Writers hold an exclusive ``flock`` on the file, so appends from several processes and
    :meth:`forget`'s rewrite do not interleave. A line cut short (a crash, a full disk) is
    skipped on read, and the next append starts on a new line, so it is not glued to it.
    :meth:`forget` rewrites the file (a temporary file, fsynced, then renamed over it)
    without the plans of a tenant, a session or some segments.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, plan: ContextPlan) -> None:
        """Add one plan at the end of the file."""
        line = plan.model_dump_json().encode("utf-8") + b"\n"
        with self._locked() as f:
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":  # the last line was cut short: end it first
                    line = b"\n" + line
            f.write(line)

    def read(self, scope: Scope | None = None, *, last: int | None = None) -> list[ContextPlan]:
        """The plans (of ``scope``, or all), oldest first; the ``last`` ones if given."""
        if not self.path.is_file():
            return []
        with self.path.open("rb") as f:
            plans = [p for p in map(_parse, f) if p is not None]
        plans = [p for p in plans if scope is None or p.scope == scope]
        return plans[-last:] if last else plans

    def forget(
        self,
        *,
        tenant: str | None = None,
        scope: Scope | None = None,
        segment_ids: Iterable[str] = (),
    ) -> int:
        """Rewrite the log without the plans of ``tenant``, of ``scope`` and those that
        placed any of ``segment_ids``; return how many plans were dropped.

        Lines that cannot be read are dropped too: they may hold forgotten text.
        """
        ids = set(segment_ids)
        if not self.path.is_file():
            return 0
        with self._locked() as f:
            f.seek(0)
            kept: list[bytes] = []
            dropped = unreadable = 0
            for raw in f:
                if not raw.strip():
                    continue
                plan = _parse(raw)
                if plan is None:
                    unreadable += 1
                elif _forgotten(plan, tenant=tenant, scope=scope, ids=ids):
                    dropped += 1
                else:
                    kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
            if dropped or unreadable:
                self._replace(kept)
        log.info("plan_log.forgotten", plans=dropped, unreadable_lines=unreadable)
        return dropped

    def _replace(self, lines: list[bytes]) -> None:
        temp = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with temp.open("wb") as out:
                out.writelines(lines)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        finally:
            temp.unlink(missing_ok=True)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash
        finally:
            os.close(folder)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[BinaryIO]:
        """The file, open for reading and appending under an exclusive lock.

        A writer that waited while :meth:`forget` renamed a new file over the path holds
        the old one: it opens the path again.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            with self.path.open("a+b") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                if _same_file(f, self.path):
                    yield f
                    return


def _same_file(f: BinaryIO, path: Path) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(f.fileno())
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def _parse(raw: bytes) -> ContextPlan | None:
    """One line as a plan; None for a blank line or one cut short by a crash."""
    if not raw.strip():
        return None
    try:
        return ContextPlan.model_validate(json.loads(raw))
    except ValueError:  # bad UTF-8, bad JSON and a failed validation are all ValueErrors
        log.warning("plan_log.unreadable_line", length=len(raw))
        return None


def _forgotten(
    plan: ContextPlan, *, tenant: str | None, scope: Scope | None, ids: set[str]
) -> bool:
    if plan.scope.tenant == tenant or plan.scope == scope:
        return True
    return any(u.segment_id in ids for u in plan.segments) or any(
        c.segment_id in ids for c in plan.chunks
    )
