from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from refrag_agent import Budget, DecoderUnavailable, InvalidInput
from refrag_agent.agent import Agent
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.plan import PlanLog
from refrag_agent.reply import ReplyDone, TextDelta
from refrag_agent.timeline import SegmentKind

HANDBOOK = "Leave policy. Up to five days of unused leave carry over. " * 8


async def _fill(chat) -> None:  # type: ignore[no-untyped-def]
    await chat.add_system("You are a support agent.")
    await chat.add_turn("user", "My locker code is 4821.")
    await chat.add_turn("assistant", "Noted: locker 4821.")
    await chat.add_tool_output(
        "lookup_order", '{"order": 7731, "eta": "Thursday"}', domain="orders"
    )
    await chat.add_document(HANDBOOK, source="handbook.md", domain="policy")


async def test_write_respond_reopen(agent_model: RefragModel, tmp_path: Path) -> None:
    folder = tmp_path / "memory"
    async with Agent.open(model=agent_model, memory=folder) as agent:
        chat = agent.session(tenant="acme", session="alice-1")
        await _fill(chat)
        reply = await chat.respond("What is my locker code?", max_new_tokens=6)
        plan = reply.plan
        assert plan.positions_fed < plan.tokens_held
        assert plan.positions_fed == reply.usage.positions_fed
        assert {u.kind for u in plan.segments} >= {SegmentKind.SYSTEM, SegmentKind.DOCUMENT}
        assert plan.effective_compression > 1
    async with Agent.open(model=agent_model, memory=folder) as agent:
        chat = agent.session(tenant="acme", session="alice-1")
        kinds = [s.kind for s in await chat.timeline()]
        assert kinds[:2] == [SegmentKind.SYSTEM, SegmentKind.USER] and len(kinds) >= 6
        again = await chat.respond("And the order?", max_new_tokens=6)
        assert again.plan.tokens_held > plan.tokens_held
    assert len(PlanLog(folder / "plans.jsonl").read(chat.scope)) == 2


async def test_budgets_are_honoured(agent: Agent) -> None:
    chat = agent.session(tenant="acme", session="budget")
    await _fill(chat)
    for budget in (Budget(), Budget(p=0.1), Budget(tokens=48, per_domain={"policy": 16})):
        plan = (await chat.respond("leave?", budget=budget, max_new_tokens=2)).plan
        pinned = {u.segment_id for u in plan.segments if u.pinned}
        spent = sum(c.n_tokens for c in plan.chunks if c.expanded and c.segment_id not in pinned)
        assert spent == sum(plan.spend_per_domain.values())
        if budget.tokens is not None:
            assert spent <= budget.tokens and plan.spend_per_domain.get("policy", 0) <= 16
        if budget.tokens is None and budget.p is None:
            assert spent == 0


async def test_placement_before_query(agent: Agent) -> None:
    chat = agent.session(tenant="acme", session="placement")
    doc = await chat.add_document(HANDBOOK, placement="before_query")
    await chat.add_turn("user", "hello")
    plan = (await chat.respond("leave?", max_new_tokens=2)).plan
    assert plan.segments[-1].segment_id != doc.id  # the query's own turn comes last
    order = [u.segment_id for u in plan.segments]
    assert order.index(doc.id) == len(order) - 2
    with pytest.raises(InvalidInput):
        await chat.add_document("x", placement="sideways")


async def test_concurrent_sessions_match_sequential(agent: Agent) -> None:
    runs = 0

    async def ask(i: int) -> str:
        nonlocal runs
        runs += 1
        chat = agent.session(tenant="acme", session=f"c-{i}-{runs}")
        await chat.add_turn("user", f"My number is {i}.")
        return (await chat.respond("What is my number?", max_new_tokens=5)).text

    together = await asyncio.gather(*(ask(i) for i in range(20)))
    one_by_one = [await ask(i) for i in range(20)]
    assert together == one_by_one


async def test_abandoned_stream_stores_no_partial_answer(agent: Agent) -> None:
    chat = agent.session(tenant="acme", session="cancel")
    await chat.add_turn("user", "hello")
    async for event in chat.stream("tell me a story", max_new_tokens=200):
        assert isinstance(event, TextDelta | ReplyDone)
        break
    kinds = [s.kind for s in await chat.timeline()]
    assert kinds == [SegmentKind.USER, SegmentKind.USER]  # the query, no half answer

    async def consume() -> None:
        async for _ in chat.stream("another story", max_new_tokens=500):
            await asyncio.sleep(0)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert SegmentKind.ASSISTANT not in [s.kind for s in await chat.timeline()]


async def test_bad_input_and_lifecycle(agent_model: RefragModel, tmp_path: Path) -> None:
    with pytest.raises(DecoderUnavailable):
        await Agent.open(model="http://127.0.0.1:9", memory=tmp_path / "m")
    with pytest.raises(InvalidInput):
        await Agent.open(model=42, memory=tmp_path / "m")
    agent = await Agent.open(model=agent_model, memory=tmp_path / "m")
    chat = agent.session(tenant="t", session="s")
    with pytest.raises(InvalidInput):
        await chat.add_turn("user", "   ")
    with pytest.raises(InvalidInput):
        await chat.add_turn("robot", "hi")  # type: ignore[arg-type]
    await agent.aclose()
    with pytest.raises(InvalidInput, match="closed"):
        agent.session(tenant="t", session="s")


async def test_a_new_session_is_an_empty_timeline(agent: Agent) -> None:
    assert await agent.session(tenant="nobody-yet", session="s").timeline() == []
    known = agent.session(tenant="acme", session="monday")
    await known.add_turn("user", "hello")
    assert await agent.session(tenant="acme", session="tuesday").timeline() == []
    assert [s.text for s in await known.timeline()] == ["hello"]


async def test_recall_across_sessions_of_one_tenant(agent: Agent) -> None:
    first = agent.session(tenant="acme", session="monday")
    await first.add_turn("user", "The staging database password is tulip-42.")
    other_tenant = agent.session(tenant="globex", session="monday")
    await other_tenant.add_turn("user", "The staging database password is orchid-77.")
    later = agent.session(tenant="acme", session="friday", recall="tenant")
    await later.add_turn("user", "hello again")
    plan = (await later.respond("staging database password", max_new_tokens=2)).plan
    recalled = [u for u in plan.segments if u.retrieved]
    assert recalled and all(u.kind is SegmentKind.USER for u in recalled)
    texts = [s.text for s in await first.timeline()]
    assert "tulip-42" in texts[0]
    recalled_ids = {u.segment_id for u in recalled}
    globex_ids = {s.id for s in await other_tenant.timeline()}
    assert not recalled_ids & globex_ids  # never another tenant's memory
    plain = agent.session(tenant="acme", session="sunday")
    await plain.add_turn("user", "hi")
    assert not [
        u for u in (await plain.respond("password", max_new_tokens=2)).plan.segments if u.retrieved
    ]


async def test_learned_policy_is_the_default_when_the_model_has_one(
    agent_model: RefragModel, tmp_path: Path
) -> None:
    from refrag_agent.policies import PolicyConfig, PolicyNetwork

    agent_model.policy = PolicyNetwork(PolicyConfig(embed_dim=agent_model.encoder.dim))
    try:
        async with Agent.open(model=agent_model, memory=tmp_path / "m") as agent:
            chat = agent.session(tenant="t", session="s")
            await chat.add_document(HANDBOOK)
            reply = await chat.respond("leave?", budget=Budget(p=0.2), max_new_tokens=2)
            assert reply.plan.policy == "learned"
    finally:
        agent_model.policy = None


async def test_overflow_keeps_recent_segments_and_retrieves_older_ones(
    minilm: ChunkEncoder, tmp_path: Path
) -> None:
    tokenizer = TiktokenTokenizer.byte_level()
    small = RefragModel.create(
        tokenizer=tokenizer,
        decoder=random_decoder("llama", vocab_size=tokenizer.vocab_size, max_positions=400),
        encoder=minilm,
    )
    async with Agent.open(model=small, memory=tmp_path / "m") as agent:
        chat = agent.session(tenant="t", session="long")
        needle = await chat.add_turn("user", "The vault combination is 31-07-1999, keep it safe.")
        for i in range(60):
            await chat.add_turn(
                "assistant", f"Filler note {i}: the weather was mild and grey today."
            )
        plan = (await chat.respond("vault combination", max_new_tokens=8)).plan
        assert plan.positions_fed + 8 <= 400
        assert plan.segments_left_in_store > 0
        used = {u.segment_id for u in plan.segments}
        assert needle.id in used  # found by hybrid search though it is the oldest
        assert any(u.retrieved for u in plan.segments)
