"""Property: whatever the budget, a laid-out plan never spends past any cap."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refrag_agent.budget import Budget
from refrag_agent.context import draft, gather, place, select
from refrag_agent.context.stored import stored_context
from refrag_agent.memory import ChunkBatch
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.policies import make_policy
from refrag_agent.template import REFRAG_TEMPLATE
from refrag_agent.timeline import Scope, Segment, SegmentKind

SCOPE = Scope(tenant="t", session="s")
DOMAINS = ("legal", "chat", "orders")
TOKENIZER = TiktokenTokenizer.byte_level()


def _context(sizes: list[tuple[str, int]]) -> tuple[list[Segment], ChunkBatch]:
    segments, ids, seqs, index, lengths = [], [], [], [], []
    for seq, (domain, n_chunks) in enumerate(sizes):
        seg = Segment(scope=SCOPE, kind=SegmentKind.DOCUMENT, text="x", domain=domain, seq=seq)
        segments.append(seg)
        for i in range(n_chunks):
            ids.append(seg.id)
            seqs.append(seq)
            index.append(i)
            lengths.append(16 if i < n_chunks - 1 else 1 + (seq * 7) % 16)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    batch = ChunkBatch(
        segment_ids=ids,
        seq=np.array(seqs, dtype=np.int64),
        chunk_index=np.array(index, dtype=np.int32),
        token_values=np.full(int(offsets[-1]), 97, dtype=np.int32),
        token_offsets=offsets,
        texts=["a"] * len(ids),
        content_hashes=["0"] * len(ids),
        embeddings=np.random.default_rng(0).standard_normal((len(ids), 8)).astype(np.float32),
        encoder_fingerprint="test",
    )
    return segments, batch


caps = st.one_of(st.integers(0, 200), st.floats(0.0, 1.0))


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.sampled_from(DOMAINS), st.integers(1, 6)), min_size=1, max_size=6),
    total=st.one_of(st.none(), st.integers(0, 400)),
    p=st.one_of(st.none(), st.floats(0.0, 1.0)),
    per_domain=st.dictionaries(st.sampled_from(DOMAINS), caps, max_size=3),
    policy=st.sampled_from(["similarity", "recency", "random", "all"]),
    pin_first=st.booleans(),
)
def test_plans_never_exceed_a_cap(
    sizes: list[tuple[str, int]],
    total: int | None,
    p: float | None,
    per_domain: dict[str, int | float],
    policy: str,
    pin_first: bool,
) -> None:
    if total is not None and p is not None:
        p = None
    budget = Budget(tokens=total, p=p, per_domain=per_domain)
    segments, batch = _context(sizes)
    pinned = {segments[0].id} if pin_first else set()
    context, table = stored_context(segments, batch, pinned=pinned, retrieved=set())
    d = draft(context, template=REFRAG_TEMPLATE, tokenizer=TOKENIZER, suffix="<|assistant|>")
    policy_ = make_policy(policy)  # type: ignore[arg-type]
    layout = place(d, select(d, policy_, table, torch.ones(8), budget))
    free = [c for c in layout.chunks if c.segment_id not in pinned]
    spent = sum(c.n_tokens for c in free if c.expanded)
    assert spent == sum(layout.spend_per_domain.values())
    held = sum(c.n_tokens for c in free)
    assert spent <= budget.total_allowance(held)
    domain_of = {s.id: s.domain for s in segments}
    for domain in DOMAINS:
        tokens = sum(c.n_tokens for c in free if domain_of[c.segment_id] == domain)
        cap = budget.domain_allowance(domain, tokens)
        if cap is not None:
            assert layout.spend_per_domain.get(domain, 0) <= cap
    assert all(c.expanded for c in layout.chunks if c.segment_id in pinned)
    assert layout.plan(table).n_compressed == sum(not c.expanded for c in layout.chunks)


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.sampled_from(DOMAINS), st.integers(1, 6)), min_size=1, max_size=8),
    tokens=st.lists(st.integers(1, 90), min_size=1, max_size=8),
    room=st.integers(0, 60),
    small=st.one_of(st.integers(0, 300), st.floats(0.0, 1.0)),
    extra=st.one_of(st.integers(0, 300), st.floats(0.0, 1.0)),
    hits=st.lists(st.integers(0, 7), max_size=8),
)
def test_a_larger_budget_never_keeps_fewer_segments(
    sizes: list[tuple[str, int]],
    tokens: list[int],
    room: int,
    small: int | float,
    extra: int | float,
    hits: list[int],
) -> None:
    segments = [
        s.model_copy(update={"n_chunks": n, "n_tokens": tokens[i % len(tokens)]})
        for i, (s, (_, n)) in enumerate(zip(_context(sizes)[0], sizes, strict=True))
    ]
    if isinstance(small, float) != isinstance(extra, float):
        extra = small
    larger = min(1.0, small + extra) if isinstance(small, float) else small + int(extra)
    budgets = [Budget(p=b) if isinstance(b, float) else Budget(tokens=b) for b in (small, larger)]
    ids = [segments[h].id for h in hits if h < len(segments)]
    kept = [gather(segments, pinned=set(), budget=b, frame=2, room=room, hits=ids) for b in budgets]
    assert {s.id for s in kept[0].kept} <= {s.id for s in kept[1].kept}
    for g in kept:  # the expansion budget only spends the room left
        used = sum(2 + s.n_chunks for s in g.kept)
        assert g.budget.total_allowance(sum(s.n_tokens for s in g.kept)) <= max(0, room - used)
