"""An 8,192-position decoder reads a 50K-token conversation: every turn compressed, none
dropped, and the first turn's fact can still be expanded."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from refrag_agent.agent import Agent
from refrag_agent.budget import Budget
from refrag_agent.context import capacity, gather
from refrag_agent.context.window import frames
from refrag_agent.engines.scripted import ScriptedEngine
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.timeline import Scope, Segment, SegmentKind

WINDOW = 8_192
CONVERSATION_TOKENS = 50_000
ANSWER = 16
FACT = "Locker code 4821. Please keep it for the gym on Monday."
SENTENCES = (
    "The bakery on Elm street sells rye bread and honey cakes every morning.",
    "Our hiking trip climbed the northern ridge before the storm rolled in.",
    "The quarterly report shows shipping delays across the western warehouses.",
    "My cousin plays cello in a small orchestra that tours in the spring.",
    "The garden needs compost, mulch and a new fence along the east side.",
    "We watched a documentary about coral reefs and ocean temperatures.",
    "The train to the coast leaves at dawn and stops at every village.",
    "Painting the kitchen took two weekends and three cans of blue paint.",
)


@pytest.fixture(scope="module")
def long_model(minilm: ChunkEncoder) -> RefragModel:
    """A tiny random decoder with SmolLM2's 8,192 positions, prompted in ChatML."""
    tokenizer = TiktokenTokenizer.byte_level(specials=("<|im_start|>", "<|im_end|>"))
    decoder = random_decoder(
        "llama",
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        n_layers=1,
        n_heads=2,
        max_positions=WINDOW,
    )
    return RefragModel.create(
        tokenizer=tokenizer, decoder=decoder, encoder=minilm, template="chatml"
    )


def conversation(model: RefragModel) -> list[dict[str, str]]:
    """The shortest conversation of two-sentence turns past 50K tokens, the fact first."""
    messages = [{"role": "user", "content": FACT}]
    tokens = len(model.tokenizer.encode(FACT))
    pairs = itertools.pairwise(itertools.cycle(SENTENCES))
    while tokens < CONVERSATION_TOKENS:
        text = " ".join(next(pairs))
        messages.append({"role": ("assistant", "user")[len(messages) % 2], "content": text})
        tokens += len(model.tokenizer.encode(text))
    return messages


async def test_a_50k_token_conversation_is_laid_out_within_the_window(
    long_model: RefragModel, tmp_path: Path
) -> None:
    engine = ScriptedEngine(long_model, ["4821", "4821"])
    async with Agent.open(engine=engine, memory=tmp_path / "m") as agent:
        chat = agent.session(tenant="t", session="long")
        written = await chat.add_messages(conversation(long_model))
        first = written[0]
        assert sum(s.n_tokens for s in written) >= CONVERSATION_TOKENS
        frame = frames(long_model.template, long_model.tokenizer)
        room = capacity(WINDOW, ANSWER)
        # At the longest kind's frame (a tool call's) it would not fit: frames are per kind.
        assert sum(max(frame.values()) + s.n_chunks for s in written) > room

        plain = (await chat.respond("What is my locker code?", max_new_tokens=ANSWER)).plan
        assert engine.plans[0].n_positions == plain.positions_fed <= WINDOW - ANSWER
        assert plain.dropped == [] and plain.segments_left_in_store == 0
        placed = {u.segment_id: u for u in plain.segments}
        assert {s.id for s in written} <= placed.keys()
        assert not any(u.retrieved for u in plain.segments)  # no hybrid-search fallback
        assert plain.chunks_compressed >= sum(s.n_chunks for s in written[:-2])
        assert plain.tokens_held > 6 * plain.positions_fed

        fact = next(c.index for c in long_model.chunk(FACT) if "4821" in c.text)
        asked = await chat.respond(
            "What is my locker code?", budget=Budget(tokens=64), max_new_tokens=ANSWER
        )
        spent = asked.plan
        assert spent.positions_fed <= WINDOW - ANSWER and spent.dropped == []
        expanded = {(c.segment_id, c.index) for c in spent.chunks if c.expanded}
        assert (first.id, fact) in expanded
        assert first.id in {u.segment_id for u in spent.segments if not u.pinned}


def _segment(seq: int, kind: SegmentKind, n_chunks: int, call: str = "") -> Segment:
    return Segment(
        scope=Scope(tenant="t", session="s"),
        kind=kind,
        text="x",
        seq=seq,
        n_tokens=16 * n_chunks,
        n_chunks=n_chunks,
        metadata={"tool_call_id": call} if call else {},
    )


def test_what_does_not_fit_is_recorded_with_the_reason() -> None:
    turn = [_segment(seq, SegmentKind.USER, 10) for seq in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)]
    call = _segment(5, SegmentKind.TOOL_CALL, 1, call="c1")
    output = _segment(11, SegmentKind.TOOL_OUTPUT, 1, call="c1")
    frame = {kind: 2 for kind in SegmentKind} | {SegmentKind.TOOL_OUTPUT: 40}
    # Costs: a turn 12, the call 3, the output 41. Half the room (40) takes turns 9, 8, 7
    # and the call; search brings turn 0; turns 6 and 5 fill the rest (75 of 80); the
    # output does not fit, so its call goes too.
    gathered = gather(
        [*turn[:5], call, *turn[5:], output],
        pinned=set(),
        budget=Budget(),
        frame=frame,
        room=80,
        hits=[turn[0].id],
    )
    assert [s.id for s in gathered.kept] == [turn[i].id for i in (0, 5, 6, 7, 8, 9)]
    assert gathered.retrieved == {turn[0].id}
    dropped = {d.segment_id: (d.reason, d.positions) for d in gathered.dropped}
    assert dropped == {
        **{turn[i].id: ("window", 12) for i in (1, 2, 3, 4)},
        call.id: ("tool_pair", 3),
        output.id: ("window", 41),
    }
