"""PlanLog: a line cut by a crash is skipped and does not swallow the next record; forget
rewrites the file atomically without the forgotten plans, even under concurrent appends."""

from __future__ import annotations

import threading
from pathlib import Path

from refrag_agent.plan import ChunkDecision, ContextPlan, PlanLog, SegmentUse
from refrag_agent.timeline import Scope, SegmentKind


def _plan(tenant: str, session: str, query: str, segment_id: str = "seg-0") -> ContextPlan:
    return ContextPlan(
        scope=Scope(tenant=tenant, session=session),
        query=query,
        policy="similarity",
        segments=[
            SegmentUse(
                segment_id=segment_id,
                kind=SegmentKind.USER,
                domain="user",
                seq=0,
                position=0,
                n_chunks=1,
                n_tokens=4,
            )
        ],
        chunks=[
            ChunkDecision(segment_id=segment_id, index=0, expanded=False, score=0.5, n_tokens=4)
        ],
        spend_per_domain={},
        tokens_held=4,
        positions_fed=1,
        chunks_expanded=0,
        chunks_compressed=1,
        effective_compression=4.0,
    )


def test_a_cut_last_line_is_skipped_and_the_next_record_kept(tmp_path: Path) -> None:
    log = PlanLog(tmp_path / "plans.jsonl")
    log.append(_plan("acme", "s", "first"))
    log.append(_plan("acme", "s", "second ☕ cut in the middle of a character"))
    data = log.path.read_bytes()
    cut = data.index("☕".encode()) + 1
    log.path.write_bytes(data[:cut])  # a crash (or a full disk) mid-record
    assert [p.query for p in log.read()] == ["first"]
    log.append(_plan("acme", "s", "third"))
    assert [p.query for p in log.read()] == ["first", "third"]
    assert [p.query for p in log.read(Scope(tenant="acme", session="s"), last=1)] == ["third"]


def test_forget_drops_a_tenant_a_session_and_the_plans_of_segments(tmp_path: Path) -> None:
    log = PlanLog(tmp_path / "plans.jsonl")
    assert log.forget(tenant="nobody") == 0 and not log.path.exists()
    for tenant, session, query, segment in [
        ("acme", "a", "acme-a", "s1"),
        ("acme", "b", "acme-b", "s2"),
        ("acme", "c", "acme-c recalls s1", "s1"),
        ("globex", "a", "globex-a", "s3"),
        ("initech", "a", "initech-a", "s4"),
    ]:
        log.append(_plan(tenant, session, query, segment))
    with log.path.open("ab") as f:
        f.write(b'{"scope": {"tenant": "acme", "session": "a"}, "query": "secret')  # cut
    assert log.forget(segment_ids=["s1"]) == 2
    assert b"secret" not in log.path.read_bytes()  # an unreadable line may hold forgotten text
    assert log.forget(scope=Scope(tenant="acme", session="b")) == 1
    assert log.forget(tenant="globex") == 1
    assert log.forget(tenant="globex") == 0
    assert [p.query for p in log.read()] == ["initech-a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans.jsonl"]


def test_appends_during_forget_are_not_lost(tmp_path: Path) -> None:
    log = PlanLog(tmp_path / "plans.jsonl")
    for i in range(50):
        log.append(_plan("gone", "s", f"gone-{i}"))

    def write(worker: int) -> None:
        other = PlanLog(log.path)  # another writer of the same file, as a second agent would be
        for i in range(50):
            other.append(_plan("kept", str(worker), f"kept-{worker}-{i}"))

    def forget() -> None:
        for _ in range(20):
            PlanLog(log.path).forget(tenant="gone")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    threads.append(threading.Thread(target=forget))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queries = [p.query for p in log.read()]
    assert sorted(queries) == sorted(f"kept-{w}-{i}" for w in range(4) for i in range(50))
