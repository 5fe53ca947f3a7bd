"""Agent-memory dialogues in natural, varied English, and the hand-written held-out set.

:func:`natural_example` builds a ``memory_qa``, ``fact_update`` or ``unanswerable``
:class:`~refrag_agent.training.tasks.TaskExample` from one seed. A fact is told by the user
(alone or with a second fact in the same turn), by the assistant confirming something it
booked, inside a tool output (a JSON object) or inside a document (prose); its value is a
PIN, a number, a code, a reference, a person, a date, a time, a place or a room. Updates
keep both values in the context, the latest later (a later turn, a tool output, or a
correction in the same sentence). Unanswerable questions ask about a plausible attribute
that was never stated while others of the same kind were; their answer is exactly
``NOT_MENTIONED``. Filler mixes small talk, task chatter, short prose on several topics
and tool chatter whose JSON carries values of every kind, and the asked fact sits at any
depth, a quarter of the time in the first turns.

Two generator families, so that a model cannot score by memorising templates:

- ``train`` draws from ``dialogue_pools.TRAIN``; ``heldout`` from
  ``dialogue_heldout_pools.HELDOUT``: disjoint statement, update, correction, question,
  acknowledgement and document phrasings; disjoint names, places and filler; dates
  "March 14" vs "14 Mar", times "3:30 pm" vs "15:40", codes "QX-7731" vs "KDV392018",
  references "K7P2QD" vs "R4821339", tool outputs as nested objects vs lists of named
  fields; and held-out attributes the training family never has (bike lock, vet, ferry,
  physio, boarding gate, tracking number, storage unit, insurance renewal).
- Seeds live in disjoint spaces: the random stream is keyed by ``natural:{family}:...``.

:func:`load_handwritten` reads the hand-written conversations shipped in
``refrag_agent/bench/data/natural_heldout.json`` (support chats, a personal assistant,
coding help, travel), the third part of the held-out evaluation.
"""

from __future__ import annotations

import json
import math
import random
import string
from collections.abc import Callable
from importlib import resources
from typing import Literal, get_args

from refrag_agent.errors import InvalidInput
from refrag_agent.training.dialogue_heldout_pools import HELDOUT
from refrag_agent.training.dialogue_pools import TRAIN, Attribute, Pools
from refrag_agent.training.dialogue_values import ValueDraw
from refrag_agent.training.tasks import NOT_MENTIONED, Segment, TaskExample

Family = Literal["train", "heldout"]
DialogueTask = Literal["memory_qa", "fact_update", "unanswerable"]
DIALOGUE_TASKS: tuple[DialogueTask, ...] = get_args(DialogueTask)
POOLS: dict[Family, Pools] = {"train": TRAIN, "heldout": HELDOUT}

_Unit = list[Segment]
# About 4 characters a token and 16 tokens a chunk: the context-size estimate of filler.
_CHARS_PER_CHUNK = 64


def statement_templates(family: Family) -> frozenset[str]:
    """Every template of ``family`` that states or updates a fact (generic and per attribute)."""
    p = POOLS[family]
    out = {*p.statements, *p.pair_statements, *p.updates, *p.corrections}
    out |= {*p.assistant_updates, *p.doc_facts}
    for attr in p.attributes:
        out |= {*attr.says, *(confirm for _, confirm in attr.confirms)}
    return frozenset(out)


def question_templates(family: Family) -> frozenset[str]:
    """Every question template of ``family`` (generic and per attribute)."""
    p = POOLS[family]
    return frozenset({*p.questions, *(q for attr in p.attributes for q in attr.asks)})


def _forms(attr: Attribute) -> dict[str, str]:
    """The template fields that name ``attr`` (see ``dialogue_pools``)."""
    mine = f"my {attr.noun}" if attr.owned else f"the {attr.noun}"
    yours = f"your {attr.noun}" if attr.owned else f"the {attr.noun}"
    return {
        "a": mine,
        "A": mine[0].upper() + mine[1:],
        "y": yours,
        "Y": yours[0].upper() + yours[1:],
        "n": attr.noun,
        "N": attr.noun[0].upper() + attr.noun[1:],
    }


class _Writer:
    """Turns facts and filler into conversation units (lists of segments)."""

    def __init__(self, draw: ValueDraw) -> None:
        self.draw = draw
        self.rng = draw.rng
        self.p = draw.pools

    def say(self, attr: Attribute, value: str) -> str:
        """One user sentence stating ``attr`` (its own phrasings or the generic ones)."""
        pool = attr.says if attr.says and self.rng.random() < 0.4 else self.p.statements
        return self.rng.choice(pool).format(v=value, **_forms(attr))

    def ask(self, attr: Attribute) -> str:
        """The question about ``attr``."""
        pool = attr.asks if attr.asks and self.rng.random() < 0.5 else self.p.questions
        return self.rng.choice(pool).format(**_forms(attr))

    def tell(self, attr: Attribute, value: str, other: tuple[Attribute, str] | None) -> _Unit:
        """A unit that states ``attr``; ``other`` (when given) may join it in the same turn."""
        modes: list[Callable[[], _Unit]] = [
            lambda: [Segment("user", self.say(attr, value)), self._ack()],
            lambda: self._tool(attr, value, other),
            lambda: [self._document(attr, value, other)],
        ]
        if other is not None:
            modes.append(lambda: [Segment("user", self._pair(attr, value, *other)), self._ack()])
        if attr.confirms:
            request, confirm = self.rng.choice(attr.confirms)
            modes.append(
                lambda: [Segment("user", request), Segment("assistant", confirm.format(v=value))]
            )
        return self.rng.choice(modes)()

    def update(self, attr: Attribute, value: str) -> _Unit:
        """A later unit that changes ``attr`` to ``value``."""
        forms = _forms(attr)
        if self.rng.random() < 0.6:
            text = self.rng.choice(self.p.updates).format(v=value, **forms)
            return [Segment("user", text), self._ack()]
        return [
            Segment("tool_output", self._json({attr.key: value}, changed=True)),
            Segment(
                "assistant", self.rng.choice(self.p.assistant_updates).format(v=value, **forms)
            ),
        ]

    def correction(self, attr: Attribute, old: str, value: str) -> _Unit:
        """One user turn that states ``old`` and corrects it to ``value``."""
        text = self.rng.choice(self.p.corrections).format(old=old, v=value, **_forms(attr))
        return [Segment("user", text), self._ack()]

    def filler(self) -> _Unit:
        """One unit of small talk, task chatter, short prose or tool chatter."""
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:
            user, reply = rng.choice(self.p.small_talk)
            return [Segment("user", user), Segment("assistant", reply)]
        if kind == 1:
            user, reply = rng.choice(self.p.chatter)
            return [Segment("user", user), Segment("assistant", reply)]
        if kind == 2:
            topic = rng.choice(self.p.prose)
            n = rng.randint(2, len(topic))
            return [Segment("document", " ".join(topic[:n]))]
        request, fields, reply = rng.choice(self.p.tool_chatter)
        values = {k: self.draw.filler(k) for k in ("place", "person", "date", "time", "number")}
        filled = {k: string.Template(v).substitute(values) for k, v in fields.items()}
        return [
            Segment("user", string.Template(request).substitute(values)),
            Segment("tool_output", json.dumps(filled, ensure_ascii=False)),
            Segment("assistant", string.Template(reply).substitute(values)),
        ]

    def _ack(self) -> Segment:
        return Segment("assistant", self.rng.choice(self.p.acks))

    def _pair(self, attr: Attribute, value: str, other: Attribute, other_value: str) -> str:
        first, second = [(attr, value), (other, other_value)][:: self.rng.choice((1, -1))]
        b = _forms(second[0])["a"]
        template = self.rng.choice(self.p.pair_statements)
        return template.format(v=first[1], b=b, w=second[1], **_forms(first[0]))

    def _tool(self, attr: Attribute, value: str, other: tuple[Attribute, str] | None) -> _Unit:
        fields = {attr.key: value}
        if other is not None and self.rng.random() < 0.5:
            fields[other[0].key] = other[1]
        return [
            Segment("user", self.rng.choice(self.p.tool_requests)),
            Segment("tool_output", self._json(fields, changed=False)),
            Segment("assistant", self.rng.choice(self.p.tool_summaries)),
        ]

    def _json(self, fields: dict[str, str], *, changed: bool) -> str:
        """A tool output holding ``fields`` among unrelated ones, in the family's shape."""
        items = list(fields.items())
        items.append(
            ("owner" if self.p.json_style == "nested" else "holder", self.draw.filler("person"))
        )
        self.rng.shuffle(items)
        if self.p.json_style == "nested":
            body: dict[str, object] = {"status": "updated" if changed else "ok"}
            body["result"] = dict(items)
        else:
            body = {"record_id": self.rng.randint(10_000, 99_999), "modified": changed}
            body["fields"] = [{"name": k, "value": v} for k, v in items]
        return json.dumps(body, ensure_ascii=False)

    def _document(
        self, attr: Attribute, value: str, other: tuple[Attribute, str] | None
    ) -> Segment:
        topic = self.rng.choice(self.p.prose)
        sentences = list(topic[: self.rng.randint(1, len(topic))])
        facts = [(attr, value)] + ([other] if other is not None and self.rng.random() < 0.5 else [])
        for a, v in facts:
            fact = self.rng.choice(self.p.doc_facts).format(v=v, **_forms(a))
            sentences.insert(self.rng.randint(0, len(sentences)), fact)
        return Segment("document", f"{self.rng.choice(self.p.doc_titles)}. " + " ".join(sentences))


def _chunks(units: list[_Unit]) -> int:
    return sum(max(1, math.ceil(len(s.text) / _CHARS_PER_CHUNK)) for u in units for s in u)


def natural_example(
    seed: int, *, size: int = 16, family: Family = "train", task: DialogueTask | None = None
) -> TaskExample:
    """One natural agent-memory dialogue, a function of ``(seed, size, family, task)``.

    ``size`` scales the context as ``tasks.make_example``'s does (about ``size / 3``
    chunks of 16 tokens; filler turns make up the rest); ``task`` is drawn from the seed
    when not given. The answer is the value's short text (``NOT_MENTIONED`` when the
    question has no answer in memory); ``references`` is what :func:`tasks.score` looks for.
    """
    return _generate(seed, size=size, family=family, task=task)[0]


def _generate(
    seed: int, *, size: int, family: Family, task: DialogueTask | None
) -> tuple[TaskExample, str | None]:
    """The example and, for an update, the value it replaced (the tests check its place)."""
    if size < 1:
        raise InvalidInput("size must be at least 1", size=size)
    if family not in POOLS:
        raise InvalidInput("family must be 'train' or 'heldout'", family=family)
    rng = random.Random(f"natural:{family}:{seed}:{size}")
    if task is None:
        task = rng.choices(DIALOGUE_TASKS, weights=(5, 3, 2))[0]
    draw = ValueDraw(rng, POOLS[family])
    write = _Writer(draw)
    asked, *others = rng.sample(POOLS[family].attributes, 4)
    # Distractors of the asked kind first: the kind of value must not give the answer away.
    others.sort(key=lambda a: a.kind != asked.kind or rng.random() < 0.3)
    distractors = [(a, draw.fact(a)[0]) for a in others[: rng.randint(1, 3)]]

    facts: list[_Unit] = []
    fact: _Unit | None = None
    later: _Unit | None = None
    answer, ref = NOT_MENTIONED, NOT_MENTIONED
    old: str | None = None
    if task == "unanswerable":
        if len(distractors) > 1 and rng.random() < 0.3:
            facts = [write.tell(*distractors.pop(0), distractors.pop(0))]
        facts += [write.tell(a, v, None) for a, v in distractors]
    else:
        answer, ref = draw.fact(asked)
        partner = distractors.pop(0) if rng.random() < 0.3 else None
        facts = [write.tell(a, v, None) for a, v in distractors]
        if task == "fact_update":
            old = answer
            answer, ref = draw.fact(asked)
            if rng.random() < 0.25:
                fact = write.correction(asked, old, answer)
            else:
                fact, later = write.tell(asked, old, partner), write.update(asked, answer)
        else:
            fact = write.tell(asked, answer, partner)

    units: list[_Unit] = []
    known = [*facts, *([fact] if fact else []), *([later] if later else [])]
    while _chunks(units) + _chunks(known) < max(3, size // 3):
        units.append(write.filler())
    for unit in facts:
        units.insert(rng.randint(0, len(units)), unit)
    if fact is not None:
        # A quarter of the facts open the conversation, however long it is.
        at = (
            rng.randint(0, min(1, len(units)))
            if rng.random() < 0.25
            else rng.randint(0, len(units))
        )
        units.insert(at, fact)
        if later is not None:
            units.insert(rng.randint(at + 1, len(units)), later)
    segments = tuple(s for unit in units for s in unit)
    return TaskExample(task, seed, segments, write.ask(asked), answer, (ref,)), old


def load_handwritten() -> list[TaskExample]:
    """The hand-written held-out conversations (``bench/data/natural_heldout.json``)."""
    path = resources.files("refrag_agent.bench").joinpath("data/natural_heldout.json")
    rows = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for i, row in enumerate(rows):
        segments = tuple(Segment(s["kind"], s["text"]) for s in row["segments"])
        task: DialogueTask = row["task"]
        if task not in DIALOGUE_TASKS:
            raise InvalidInput("unknown task in the hand-written set", task=task, index=i)
        out.append(
            TaskExample(task, i, segments, row["question"], row["answer"], tuple(row["references"]))
        )
    return out
