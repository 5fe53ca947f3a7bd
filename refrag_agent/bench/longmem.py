"""``refrag-agent bench longmem``: LoCoMo and LongMemEval, four memories at equal cost.

Each conversation of the file (:mod:`refrag_agent.bench.longmem_data`) is replayed into a
fresh session through the public SDK (``Session.add_turn``, the date and speaker in the
text and, with the turn id and session, in the segment's metadata). Each question is then
asked four times, through ``Session.respond`` and one context builder, same decoder:

- **refrag**: the whole memory, every chunk one projected embedding, the agent's policy
  (the checkpoint's learned one, else query similarity) expanding ``Budget(p=p)``;
- **truncation**: the newest turns as tokens, nothing else, as many as fit the positions
  REFRAG fed (the next-older turn cut from its start by the recency policy);
- **rag**: the turns the store's hybrid search (vector + full text) ranks best, as tokens,
  the top k that fit the positions REFRAG fed, laid out in time order;
- **none**: no memory, the question alone.

The baselines are ``Budget(unexpanded="left_out")``: what is not chosen is not fed. Each
call's question and answer are deleted from the session after it, so every arm reads the
same history. Scores: :mod:`refrag_agent.bench.longmem_score` (token F1 and exact match as
each benchmark's script normalises them; no LLM judge). TTFT is ``reply.usage.ttft_s``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refrag_agent.agent import Agent, Session
from refrag_agent.bench.common import median, run_header, write_json
from refrag_agent.bench.longmem_data import Conversation, Question, load_longmem
from refrag_agent.bench.longmem_score import score_answer
from refrag_agent.budget import Budget
from refrag_agent.context.window import frames
from refrag_agent.engines import open_engine, resolve_model
from refrag_agent.logs import get_logger
from refrag_agent.memory import MemoryStore
from refrag_agent.model.fingerprint import file_sha256
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.reply import Reply
from refrag_agent.timeline import Segment, SegmentKind

log = get_logger(__name__)

ARMS = ("refrag", "truncation", "rag", "none")
P = 0.25
MAX_NEW_TOKENS = 32
SEARCH_LIMIT = 200  # turns ranked for the RAG arm, at most
TENANT = "longmem"

Progress = Callable[[int], None]


@dataclass
class _Arms:
    """The agents the arms answer through: one store, one engine, two policies."""

    refrag: Agent
    recency: Agent
    frame: dict[SegmentKind, int]


async def _ask(session: Session, question: str, budget: Budget, max_new_tokens: int) -> Reply:
    """Answer, then delete what the call stored, so the next arm reads the same history."""
    before = {s.id for s in await session.timeline()}
    try:
        return await session.respond(question, budget=budget, max_new_tokens=max_new_tokens)
    finally:
        added = [s.id for s in await session.timeline() if s.id not in before]
        if added:
            await session.delete(added)


def _cost(segment: Segment, frame: dict[SegmentKind, int]) -> int:
    """Positions a turn fed whole as tokens costs: its frame and its tokens."""
    return frame[segment.kind] + segment.n_tokens


def _fill(
    ranked: Sequence[Segment], frame: dict[SegmentKind, int], room: int
) -> tuple[list[str], int, Segment | None]:
    """The top turns of ``ranked`` that fit ``room``, the room left, and the first that
    did not fit (``None`` when all did)."""
    chosen: list[str] = []
    for segment in ranked:
        cost = _cost(segment, frame)
        if cost > room:
            return chosen, room, segment
        chosen.append(segment.id)
        room -= cost
    return chosen, room, None


async def ask_all_arms(
    arms: _Arms, scope_session: str, question: Question, *, p: float, max_new_tokens: int
) -> dict[str, dict[str, Any]]:
    """One question through the four arms; each arm's answer, score, positions, TTFT."""
    main = arms.refrag.session(tenant=TENANT, session=scope_session)
    recency = arms.recency.session(tenant=TENANT, session=scope_session)
    asked = question.asked()
    history = [
        s for s in await main.timeline() if s.kind in (SegmentKind.USER, SegmentKind.ASSISTANT)
    ]
    replies: dict[str, Reply] = {}
    replies["none"] = await _ask(
        main, asked, Budget(tokens=0, unexpanded="left_out"), max_new_tokens
    )
    replies["refrag"] = await _ask(main, asked, Budget(p=p), max_new_tokens)
    base = replies["none"].plan.positions_fed
    room = replies["refrag"].plan.positions_fed - base
    # Truncation: the newest whole turns, then the tail of the next-older one by recency.
    newest = sorted(history, key=lambda s: -s.seq)
    pinned, left, cut = _fill(newest, arms.frame, room)
    tail = 0
    if cut is not None and left > arms.frame[cut.kind]:
        # The cut turn's last chunks that fit, whole: recency expands exactly those (the
        # newest chunks left), and the budget then has no room for any other.
        sizes = [len(c.token_ids) for c in arms.refrag.model.chunk(cut.text)]
        for size in reversed(sizes):
            if tail + size > left - arms.frame[cut.kind]:
                break
            tail += size
    replies["truncation"] = await _ask(
        recency,
        asked,
        Budget(tokens=tail, pinned=frozenset(pinned), unexpanded="left_out"),
        max_new_tokens,
    )
    # RAG: the top k turns of the store's search that fit, fed whole.
    hits = await main.search(asked, limit=min(SEARCH_LIMIT, max(1, len(history))))
    ranked = [
        h.segment for h in hits if h.segment.kind in (SegmentKind.USER, SegmentKind.ASSISTANT)
    ]
    top, _, _ = _fill(ranked, arms.frame, room)
    replies["rag"] = await _ask(
        main, asked, Budget(tokens=0, pinned=frozenset(top), unexpanded="left_out"), max_new_tokens
    )
    out: dict[str, dict[str, Any]] = {}
    for arm in ARMS:
        reply = replies[arm]
        score = score_answer(question, reply.text)
        out[arm] = {
            "answer": reply.text,
            "f1": round(score.f1, 4),
            "exact": score.exact,
            "positions_fed": reply.plan.positions_fed,
            "ttft_s": reply.usage.ttft_s,
            "policy": reply.plan.policy,
            # the history's turns fed, the query (the last user turn) not counted
            "turns_fed": sum(
                u.kind in (SegmentKind.USER, SegmentKind.ASSISTANT) for u in reply.plan.segments
            )
            - 1,
        }
    out["rag"]["k"] = len(top)
    return out


async def replay(session: Session, conversation: Conversation) -> None:
    """Write the conversation's turns, in order, as the session's history."""
    for turn in conversation.turns:
        await session.add_turn(turn.role, turn.rendered(), metadata=turn.metadata())


async def run_longmem(
    conversations: Sequence[Conversation],
    model: RefragModel,
    memory: Path,
    *,
    p: float = P,
    max_new_tokens: int = MAX_NEW_TOKENS,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Replay and ask every question through the four arms; one record per question."""
    store = await MemoryStore.open(memory, encoder=model.encoder)
    engine = await open_engine(model)
    sampling = SamplingParams(max_new_tokens=max_new_tokens)
    records: list[dict[str, Any]] = []
    try:
        async with (
            Agent.open(engine=engine, memory=store, pin_last_turns=0, sampling=sampling) as main,
            Agent.open(
                engine=engine, memory=store, policy="recency", pin_last_turns=0, sampling=sampling
            ) as recency,
        ):
            arms = _Arms(main, recency, frames(model.template, model.tokenizer))
            warmed = False
            for n, conversation in enumerate(conversations):
                name = f"c{n}-{conversation.cid}"
                await replay(main.session(tenant=TENANT, session=name), conversation)
                log.info(
                    "longmem.replayed", conversation=conversation.cid, turns=len(conversation.turns)
                )
                if not warmed:  # the first decoder calls pay for allocation: not measured
                    await ask_all_arms(arms, name, conversation.questions[0], p=p, max_new_tokens=1)
                    warmed = True
                for question in conversation.questions:
                    arms_out = await ask_all_arms(
                        arms, name, question, p=p, max_new_tokens=max_new_tokens
                    )
                    records.append(
                        {
                            "conversation": conversation.cid,
                            "qid": question.qid,
                            "category": question.category,
                            "question": question.question,
                            "reference": question.answer,
                            "arms": arms_out,
                        }
                    )
                    if progress is not None:
                        progress(1)
    finally:
        await engine.aclose()
        await store.aclose()
    return records


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: mean F1 and exact match, mean positions fed, TTFT p50; and per category."""

    def row(rs: Sequence[dict[str, Any]], arm: str) -> dict[str, Any]:
        cells = [r["arms"][arm] for r in rs]
        return {
            "f1": round(sum(c["f1"] for c in cells) / len(cells), 4),
            "exact": round(sum(c["exact"] for c in cells) / len(cells), 4),
            "positions_fed": round(sum(c["positions_fed"] for c in cells) / len(cells), 1),
            "ttft_p50_ms": round(1e3 * median([c["ttft_s"] for c in cells]), 1),
            "n": len(cells),
        }

    categories = sorted({r["category"] for r in records})
    rows = {arm: row(records, arm) for arm in ARMS}
    by_category = {
        c: {arm: row([r for r in records if r["category"] == c], arm) for arm in ARMS}
        for c in categories
    }
    margins = {
        other: round(rows["refrag"]["f1"] - rows[other]["f1"], 4)
        for other in ("truncation", "rag", "none")
    }
    losses = [
        {"category": c, "against": other, "margin": round(v["refrag"]["f1"] - v[other]["f1"], 4)}
        for c, v in by_category.items()
        for other in ("truncation", "rag")
        if v["refrag"]["f1"] < v[other]["f1"]
    ]
    return {
        "rows": rows,
        "by_category": by_category,
        "f1_margin_of_refrag": margins,
        "refrag_loses": losses,
        "refrag_beats_rag_and_truncation": margins["rag"] > 0 and margins["truncation"] > 0,
    }


async def run_longmem_bench(
    data: Path,
    fmt: str,
    *,
    model: RefragModel | str | Path | None = None,
    limit: int | None = None,
    p: float = P,
    max_new_tokens: int = MAX_NEW_TOKENS,
    json_path: Path | None = None,
    plot_path: Path | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> dict[str, Any]:
    """Load, replay, ask, score; write JSON (and the plot); return the payload.

    ``progress(total)`` returns the callback advanced once per question (the CLI's bar).
    """
    conversations = load_longmem(data, fmt, limit=limit)
    loaded = resolve_model(model)
    n_questions = sum(len(c.questions) for c in conversations)
    tick = progress(n_questions) if progress is not None else None
    with tempfile.TemporaryDirectory(prefix="refrag-longmem-") as folder:
        records = await run_longmem(
            conversations, loaded, Path(folder), p=p, max_new_tokens=max_new_tokens, progress=tick
        )
    params = sum(x.numel() for x in loaded.decoder.parameters())
    payload: dict[str, Any] = {
        **run_header("longmem"),
        "data": {
            "path": str(data),
            "name": data.name,
            "sha256": file_sha256(data),
            "format": fmt,
            "limit": limit,
            "conversations": len(conversations),
            "questions": n_questions,
            "turns": sum(len(c.turns) for c in conversations),
        },
        "model": {
            "name": "embedded default" if model is None else str(model),
            "params": int(params),
            "k": loaded.k,
            "max_positions": loaded.shape.max_positions,
            "learned_policy": loaded.policy is not None,
        },
        "p": p,
        "max_new_tokens": max_new_tokens,
        "scoring": "token F1 and exact match, normalised as the benchmark's own script "
        "(LoCoMo) or as SQuAD (LongMemEval, whose own scoring is an LLM judge); no LLM judge",
        **summarize(records),
        "questions": records,
    }
    write_json(json_path, payload)
    if plot_path is not None:
        # Deferred for import time: matplotlib loads only when a plot is asked for.
        from refrag_agent.bench.longmem_plot import longmem_figure

        plot_path.parent.mkdir(parents=True, exist_ok=True)
        longmem_figure(payload).savefig(plot_path, dpi=120)
    return payload


def format_longmem(payload: dict[str, Any]) -> str:
    """The table the CLI prints: each arm's score, positions fed and TTFT p50."""
    data, model = payload["data"], payload["model"]
    rows = payload["rows"]
    asked = payload["questions"]
    policy = asked[0]["arms"]["refrag"]["policy"] if asked else "-"
    lines = [
        f"{data['format']} {data['name']} (sha256 {data['sha256'][:16]}...): "
        f"{data['conversations']} conversations, {data['questions']} questions"
        + (f" (--limit {data['limit']})" if data["limit"] else ""),
        f"decoder {model['name']} ({model['params'] / 1e6:.1f}M, k={model['k']}), "
        f"REFRAG policy {policy}, p={payload['p']}; scores: token F1 / exact match, no LLM judge",
        f"  {'arm':<11} {'F1':>6} {'EM':>6} {'positions':>10} {'TTFT p50':>9}",
    ]
    for arm in ARMS:
        r = rows[arm]
        lines.append(
            f"  {arm:<11} {r['f1']:>6.3f} {r['exact']:>6.3f} {r['positions_fed']:>10.1f} "
            f"{r['ttft_p50_ms']:>7.1f}ms"
        )
    lines.append("F1 by category (refrag / truncation / rag / none):")
    for category, by_arm in payload["by_category"].items():
        cells = " / ".join(f"{by_arm[a]['f1']:.3f}" for a in ARMS)
        lines.append(f"  {category:<28} n={by_arm['refrag']['n']:<4} {cells}")
    m = payload["f1_margin_of_refrag"]
    verdict = "beats" if payload["refrag_beats_rag_and_truncation"] else "does not beat"
    lines.append(
        f"REFRAG {verdict} both baselines at equal positions: F1 margin vs rag {m['rag']:+.3f}, "
        f"vs truncation {m['truncation']:+.3f}, vs no memory {m['none']:+.3f}"
    )
    for loss in payload["refrag_loses"]:
        lines.append(f"  loses to {loss['against']} on {loss['category']}: {loss['margin']:+.3f}")
    return "\n".join(lines)
