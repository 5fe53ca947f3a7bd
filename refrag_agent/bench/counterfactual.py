"""Does the decoder read what a compressed chunk holds? Two checks on held-out dialogues.

- **Counterfactual**: the chunks holding the answer are compressed and every other chunk
  goes in as tokens. Exact match there, then the same with the value inside those chunks
  replaced by another value of the same attribute (same shape: digits, letters, layout):
  the share of answers that follow the new value. A model that ignores compressed chunks
  answers from elsewhere (the superseded value of an update, a guess) and never follows.
- **Reconstruction**: one chunk's embedding alone, then the chunk's tokens teacher-forced:
  how many tokens (and digit tokens) the decoder predicts, against a control that reads
  another chunk's embedding. Equal figures mean the embedding carries the domain, not the
  chunk.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from refrag_agent.bench.evaluation import Evaluator, exact_match
from refrag_agent.model.assembly import CompressedChunk, PlacementPlan, assemble
from refrag_agent.model.chunker import chunk_ids
from refrag_agent.training.dialogue_heldout_pools import HELDOUT
from refrag_agent.training.dialogue_pools import Attribute
from refrag_agent.training.dialogue_values import ValueDraw
from refrag_agent.training.stages import IGNORE, Example, answer_chunks, collate
from refrag_agent.training.tasks import NOT_MENTIONED, Segment, TaskExample

MAX_DRAWS = 200  # draws of a same-shaped value before an example is left out


@dataclass(frozen=True)
class AllBut:
    """Every chunk index except ``excluded``: the ``expand`` that compresses only those."""

    excluded: frozenset[int]

    def __contains__(self, i: object) -> bool:
        return i not in self.excluded


def value_shape(value: str) -> str:
    """Digits as ``9``, capitals as ``A``, each run of small letters as one ``a``."""
    marks = (
        "9" if c.isdigit() else "A" if c.isupper() else "a" if c.isalpha() else c for c in value
    )
    return re.sub("a+", "a", "".join(marks))


def asked_attribute(task: TaskExample) -> Attribute | None:
    """The held-out attribute a question asks about: the one whose own question it is, or
    the longest noun it names."""
    own = [a for a in HELDOUT.attributes if task.question in a.asks]
    if own:
        return own[0]
    question = task.question.lower()
    named = [a for a in HELDOUT.attributes if a.noun.lower() in question]
    return max(named, key=lambda a: len(a.noun)) if named else None


def swap_value(task: TaskExample, new_ref: str) -> TaskExample:
    """``task`` with its value's every occurrence replaced by ``new_ref``, the answer too."""
    old = task.references[0]
    segments = tuple(Segment(s.kind, s.text.replace(old, new_ref)) for s in task.segments)
    answer = task.answer.replace(old, new_ref)
    return replace(task, segments=segments, answer=answer, references=(new_ref,))


def changed_value(task: TaskExample, *, seed: int) -> TaskExample | None:
    """``task`` with its answer's value replaced by another value of the asked attribute,
    shaped alike and found nowhere in the context; ``None`` when there is none to draw."""
    attr = asked_attribute(task)
    if attr is None or task.answer == NOT_MENTIONED or len(task.references) != 1:
        return None
    old = task.references[0]
    context = " ".join(s.text for s in task.segments).lower()
    rng = random.Random(f"counterfactual:{seed}")
    for _ in range(MAX_DRAWS):
        # A fresh draw each time: one draw refuses values like its earlier ones, and a
        # small pool (places) would run out.
        _, ref = ValueDraw(rng, HELDOUT).fact(attr)
        clash = ref.lower() in context or old.lower() in ref.lower()
        if value_shape(ref) == value_shape(old) and not clash:
            return swap_value(task, ref)
    return None


def counterfactual(ev: Evaluator, tasks: Sequence[TaskExample]) -> dict[str, Any]:
    """Answer chunks compressed, the rest as tokens: exact match, then with the value changed."""
    k = ev.model.k
    pairs = []
    for task in tasks:
        swapped = changed_value(task, seed=task.seed)
        if swapped is not None and answer_chunks(task, ev.model.tokenizer, k=k):
            pairs.append((task, swapped))
    if not pairs:
        return {"n_examples": 0}
    originals = [t for t, _ in pairs]
    changed = [c for _, c in pairs]

    def compressed_answer(t: TaskExample) -> AllBut:
        return AllBut(frozenset(answer_chunks(t, ev.model.tokenizer, k=k)))

    before = ev.task_answers(originals, [compressed_answer(t) for t in originals])
    after = ev.task_answers(changed, [compressed_answer(t) for t in changed])
    right = [exact_match(t, a) for t, a in zip(originals, before, strict=True)]
    follows = [exact_match(c, a) for c, a in zip(changed, after, strict=True)]
    keeps = [exact_match(t, a) for t, a in zip(originals, after, strict=True)]
    # Looser than exact match, for a model that answers in a sentence: the new value is
    # in the answer and the old one is not.
    mentions = [
        c.references[0] in a and t.references[0] not in a
        for t, c, a in zip(originals, changed, after, strict=True)
    ]
    n = len(pairs)
    n_right = sum(right)
    return {
        "n_examples": n,
        "left_out": len(tasks) - n,
        "exact_match": round(n_right / n, 4),
        "follows_changed_value": round(sum(follows) / n, 4),
        "keeps_old_value": round(sum(keeps) / n, 4),
        "mentions_changed_value": round(sum(mentions) / n, 4),
        "follows_when_right": (
            round(sum(f for f, r in zip(follows, right, strict=True) if r) / n_right, 4)
            if n_right
            else None
        ),
        "examples": [
            {"question": t.question, "old": t.answer, "new": c.answer, "before": b, "after": a}
            for (t, c), b, a in list(zip(pairs, before, after, strict=True))[:5]
        ],
    }


def answer_chunk_texts(ev: Evaluator, tasks: Sequence[TaskExample]) -> list[tuple[int, ...]]:
    """One chunk per answerable task: the first that holds the whole answer value."""
    tok = ev.model.tokenizer
    out = []
    for task in tasks:
        if task.answer == NOT_MENTIONED:
            continue
        found = (
            c.token_ids
            for s in task.segments
            for c in chunk_ids(tok.encode(s.text), tok, k=ev.model.k)
            if task.references[0] in c.text
        )
        ids = next(found, None)
        if ids is not None:
            out.append(tuple(ids))
    return out


@torch.no_grad()
def _hits(
    ev: Evaluator, chunks: Sequence[tuple[int, ...]], *, shuffled: bool
) -> tuple[list[bool], list[int]]:
    """Teacher-forced argmax hits over every target token, and the targets; ``shuffled``
    reads each chunk from the next chunk's vector instead of its own."""
    tok = ev.model.tokenizer
    hits: list[bool] = []
    targets: list[int] = []
    for i in range(0, len(chunks), ev.batch_size):
        part = chunks[i : i + ev.batch_size]
        examples = [
            Example((CompressedChunk(0, len(ids)),), (tok.decode(list(ids)),), ids) for ids in part
        ]
        batch = collate(examples, cache=ev.cache, encoder=ev.model.encoder)
        vectors = batch.chunk_vectors
        assert vectors is not None
        if shuffled:
            # Another chunk of the whole set: a batch of one would read itself.
            others = [chunks[(i + j + 1) % len(chunks)] for j in range(len(part))]
            vectors = ev.cache([tok.decode(list(ids)) for ids in others])  # (B, enc_dim)
        plans = [PlacementPlan(p, vectors) for p in batch.placements]
        embed = ev.model.decoder.get_input_embeddings()
        assembled = assemble(plans, embed, ev.model.projector)
        logits = ev.model.decoder(
            inputs_embeds=assembled.inputs_embeds,
            attention_mask=assembled.attention_mask,
            position_ids=assembled.position_ids,
        ).logits  # (B, T, V)
        mask = batch.labels != IGNORE  # (B, T)
        hits.extend((logits.argmax(-1)[mask] == batch.labels[mask]).tolist())
        targets.extend(batch.labels[mask].tolist())
    return hits, targets


def reconstruction(ev: Evaluator, chunks: Sequence[tuple[int, ...]]) -> dict[str, Any]:
    """Token and digit accuracy of single chunks read from their own vector and another's."""
    if len(chunks) < 2:
        return {"n_chunks": len(chunks)}
    tok = ev.model.tokenizer
    out: dict[str, Any] = {"n_chunks": len(chunks)}
    for name, shuffled in (("own", False), ("shuffled", True)):
        hits, targets = _hits(ev, chunks, shuffled=shuffled)
        digits = [h for h, t in zip(hits, targets, strict=True) if _is_digit(tok.decode([t]))]
        out[name] = {
            "token_accuracy": round(sum(hits) / len(hits), 4),
            "digit_accuracy": round(sum(digits) / len(digits), 4) if digits else None,
            "n_tokens": len(hits),
            "n_digit_tokens": len(digits),
        }
    return out


def _is_digit(text: str) -> bool:
    return any(ch.isdigit() for ch in text)
