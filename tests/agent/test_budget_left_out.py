"""``Budget(unexpanded="left_out")``: the chunks not expanded are not fed at all."""

from __future__ import annotations

import pytest

from refrag_agent.agent import Agent
from refrag_agent.budget import Budget
from refrag_agent.errors import BudgetError

TURNS = (
    "My locker code at the gym is 4821 and the spare key is with the front desk staff.",
    "Noted: locker code 4821, and the spare key is at the front desk of the gym.",
    "Also, my sister Ana flies in from Lisbon on the ninth and stays for two full weeks.",
    "Ana arrives from Lisbon on the ninth and stays two weeks; shall I book a table?",
)


async def _session(agent: Agent):  # type: ignore[no-untyped-def]
    chat = agent.session(tenant="t", session="s")
    for i, text in enumerate(TURNS):
        await chat.add_turn("user" if i % 2 == 0 else "assistant", text)
    return chat


async def test_left_out_feeds_only_the_pins_and_what_is_expanded(agent: Agent) -> None:
    chat = await _session(agent)
    query = "What is my locker code?"
    compressed = await chat.respond(query, budget=Budget(tokens=0), max_new_tokens=1)
    none = await chat.respond(
        query, budget=Budget(tokens=0, unexpanded="left_out"), max_new_tokens=1
    )
    # Only the pinned turns (the last two of the timeline and the query) are fed.
    assert all(u.pinned for u in none.plan.segments)
    assert none.plan.chunks_compressed == 0
    assert none.plan.positions_fed < compressed.plan.positions_fed
    assert none.plan.tokens_held == none.plan.positions_fed  # every position a token
    # The turns fed nothing are recorded as left out, with what they would have cost.
    left = [d for d in none.plan.dropped if d.reason == "left_out"]
    placed = {u.segment_id for u in none.plan.segments}
    assert not placed & {d.segment_id for d in left}
    oldest = [seg.id for seg in (await chat.timeline())[:2]]
    assert set(oldest) <= {d.segment_id for d in left}
    assert all(d.positions > 0 for d in left)
    assert not [d for d in compressed.plan.dropped if d.reason == "left_out"]
    some = await chat.respond(
        query, budget=Budget(tokens=32, unexpanded="left_out"), max_new_tokens=1
    )
    assert some.plan.chunks_compressed == 0
    assert some.plan.chunks_expanded >= 1
    fed = {u.segment_id for u in some.plan.segments if not u.pinned}
    # A segment is fed only through an expanded chunk, and no more than 32 unpinned tokens.
    expanded = {c.segment_id for c in some.plan.chunks if c.expanded}
    assert fed <= expanded
    unpinned = sum(c.n_tokens for c in some.plan.chunks if c.segment_id in fed)
    assert unpinned <= 32
    assert some.plan.positions_fed > none.plan.positions_fed


def test_unexpanded_is_checked() -> None:
    assert Budget().unexpanded == "compressed"
    with pytest.raises(BudgetError):
        Budget(unexpanded="dropped")  # type: ignore[arg-type]
