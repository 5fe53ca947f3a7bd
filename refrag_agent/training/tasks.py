"""Deterministic generators of long-context and agent-memory tasks.

Every example is a function of ``(task, seed, size)`` only: the same call gives the same
example on every machine (``random.Random`` seeded with a string hashes it with sha512).

RULER-style tasks (Hsieh et al., 2024), on a haystack of noise sentences:

- ``niah_single``: one needle "One of the special magic numbers for {key} is: {value}.";
- ``niah_multikey``: several needles with different keys, one is asked for;
- ``niah_multivalue``: several values for the same key, all are asked for;
- ``variable_tracking``: chains "VAR A = 12345", "VAR B = VAR A"; name every variable
  that holds the value.

Agent-memory dialogues, as the SDK lays them out (turns, tool outputs, documents):

- ``memory_qa``: a fact said in a user turn, a tool output or a document, among chit-chat;
- ``fact_update``: a fact said, then changed later; the answer is the latest value;
- ``unanswerable``: the asked attribute never appears; the answer is ``not mentioned``;
- ``tool_call``: the question needs a tool; the answer is a call in the tool-call format.

Tool-call format (what the decoder writes, and what a ``tool_call`` segment holds)::

    <|tool_call|>{"arguments": {"city": "Oslo"}, "name": "get_weather"}<|end|>

one JSON object with exactly the keys ``name`` (a tool listed in the system segment) and
``arguments`` (an object), written by ``tools.protocol.call_text``, after the model
template's call marker (``calls_tool``: the example's answer is the JSON; ``layout_task``
adds the marker of the template it lays the example out in).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Literal, get_args

from typing_extensions import assert_never

from refrag_agent.errors import InvalidInput
from refrag_agent.tools.protocol import call_text

TaskName = Literal[
    "niah_single",
    "niah_multikey",
    "niah_multivalue",
    "variable_tracking",
    "memory_qa",
    "fact_update",
    "unanswerable",
    "tool_call",
]
TASKS: tuple[TaskName, ...] = get_args(TaskName)
SegmentKindName = Literal["system", "user", "assistant", "tool_call", "tool_output", "document"]
NOT_MENTIONED = "not mentioned"

NOISE = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)
_ADJECTIVES = (
    "amber", "brave", "calm", "dusty", "eager", "fuzzy", "gentle", "hollow", "icy", "jolly",
    "keen", "lucky", "mellow", "noble", "odd", "proud", "quiet", "rapid", "silent", "tidy",
)  # fmt: skip
_NOUNS = (
    "anchor", "badger", "candle", "dragon", "engine", "falcon", "garden", "harbor", "island",
    "jacket", "kettle", "ladder", "meadow", "needle", "orchid", "pepper", "quarry", "river",
    "saddle", "tunnel",
)  # fmt: skip
_CHITCHAT = (
    ("user", "How are you today?"),
    ("assistant", "I'm doing well, thanks for asking."),
    ("user", "Can you remind me to drink water later?"),
    ("assistant", "Sure, I will keep that in mind."),
    ("user", "The weather has been strange this week."),
    ("assistant", "It has been changing a lot lately."),
    ("user", "I read an interesting article about bees."),
    ("assistant", "Bees are fascinating; they communicate by dancing."),
)
# (attribute, statement template, update template, question)
_FACTS = (
    ("locker code", "My locker code is {v}.", "I changed my locker code to {v}.",
     "What is my locker code?"),
    ("meeting room", "The meeting is in room {v}.", "The meeting moved to room {v}.",
     "Which room is the meeting in?"),
    ("wifi password", "The wifi password is {v}.", "The wifi password is now {v}.",
     "What is the wifi password?"),
    ("flight number", "My flight number is {v}.", "I switched to flight {v}.",
     "What is my flight number?"),
    ("parking spot", "I parked in spot {v}.", "I moved the car to spot {v}.",
     "Where did I park?"),
    ("dentist day", "My dentist appointment is on {v}.", "The dentist moved me to {v}.",
     "When is my dentist appointment?"),
)  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TOOLS = {
    "get_weather": ("city", ("Oslo", "Lima", "Cairo", "Perth", "Quito", "Riga")),
    "get_order": ("order_id", None),
    "search_docs": ("query", ("refund policy", "install guide", "pricing", "api limits")),
}
_TOOL_QUESTIONS = {
    "get_weather": "What is the weather in {v} right now?",
    "get_order": "Where is my order {v}?",
    "search_docs": "Look up our {v} for me.",
}


@dataclass(frozen=True)
class Segment:
    """One segment of the conversation: its kind (a timeline ``SegmentKind`` value) and text."""

    kind: SegmentKindName
    text: str


@dataclass(frozen=True)
class TaskExample:
    """A context of segments, a question, the answer to generate, and references to score."""

    task: TaskName
    seed: int
    segments: tuple[Segment, ...]
    question: str
    answer: str
    references: tuple[str, ...]
    calls_tool: bool = False  # the answer is a call's JSON, written after the call marker
    tools: tuple[str, ...] = ()  # the tools offered (training.tool_dialogues), by name
    # What the answering call itself wrote after the question: its tool calls and their
    # outputs, in order (the tool loop's later steps); laid out after the question.
    exchange: tuple[Segment, ...] = ()


def _key(rng: random.Random) -> str:
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"


def _number(rng: random.Random) -> str:
    return str(rng.randint(1_000_000, 9_999_999))


def _value(rng: random.Random, attribute: str) -> str:
    if attribute == "meeting room":
        return f"{rng.randint(1, 40)}{rng.choice('ABCD')}"
    if attribute == "wifi password":
        return f"{rng.choice(_NOUNS)}{rng.randint(10, 99)}"
    if attribute == "flight number":
        return f"{rng.choice(('LH', 'AF', 'BA', 'KL'))}{rng.randint(100, 999)}"
    if attribute == "dentist day":
        return rng.choice(_DAYS)
    return str(rng.randint(1000, 9999))


def _haystack(rng: random.Random, n_sentences: int, needles: list[str]) -> str:
    """Noise sentences with needles spread at evenly spaced depths."""
    sentences = [rng.choice(NOISE) for _ in range(n_sentences)]
    for i, needle in enumerate(needles):
        depth = round((i + 1) * len(sentences) / (len(needles) + 1))
        sentences.insert(depth + i, needle)
    return " ".join(sentences)


def _needle(key: str, value: str) -> str:
    return f"One of the special magic numbers for {key} is: {value}."


def _niah(
    task: TaskName, rng: random.Random, size: int
) -> tuple[list[Segment], str, str, tuple[str, ...]]:
    keys: list[str] = []
    while len(keys) < 4:
        key = _key(rng)
        if key not in keys:
            keys.append(key)
    if task == "niah_single":
        value = _number(rng)
        text = _haystack(rng, size, [_needle(keys[0], value)])
        question = f"What is the special magic number for {keys[0]} mentioned in the text?"
        return [Segment("document", text)], question, value, (value,)
    if task == "niah_multikey":
        values = [_number(rng) for _ in keys]
        text = _haystack(rng, size, [_needle(k, v) for k, v in zip(keys, values, strict=True)])
        asked = rng.randrange(len(keys))
        question = f"What is the special magic number for {keys[asked]} mentioned in the text?"
        return [Segment("document", text)], question, values[asked], (values[asked],)
    values = [_number(rng) for _ in range(3)]
    text = _haystack(rng, size, [_needle(keys[0], v) for v in values])
    question = f"What are all the special magic numbers for {keys[0]} mentioned in the text?"
    return [Segment("document", text)], question, ", ".join(values), tuple(values)


def _variable_tracking(
    rng: random.Random, size: int
) -> tuple[list[Segment], str, str, tuple[str, ...]]:
    names = rng.sample([f"{a}{b}" for a in "ABCDEFGHJKLMNPQRSTUVWXYZ" for b in "XYZQ"], 8)
    value = str(rng.randint(10_000, 99_999))
    chain, decoy = names[:4], names[4:]
    statements = [f"VAR {chain[0]} = {value}."]
    statements += [f"VAR {chain[i]} = VAR {chain[i - 1]}." for i in range(1, len(chain))]
    other = str(rng.randint(10_000, 99_999))
    statements += [f"VAR {decoy[0]} = {other}."]
    statements += [f"VAR {decoy[i]} = VAR {decoy[i - 1]}." for i in range(1, len(decoy))]
    text = _haystack(rng, size, statements)
    question = f"Find all variables that are assigned the value {value}."
    return [Segment("document", text)], question, ", ".join(chain), tuple(chain)


def _chitchat(rng: random.Random, n: int) -> list[Segment]:
    out = []
    for _ in range(n):
        i = rng.randrange(0, len(_CHITCHAT), 2)
        out += [Segment("user", _CHITCHAT[i][1]), Segment("assistant", _CHITCHAT[i + 1][1])]
    return out


def _memory(
    task: TaskName, rng: random.Random, size: int
) -> tuple[list[Segment], str, str, tuple[str, ...]]:
    facts = rng.sample(_FACTS, 3)
    (attr, say, update, question), others = facts[0], facts[1:]
    n_fill = max(1, size // 4)
    segments = _chitchat(rng, n_fill)
    if task == "unanswerable":
        # Other facts are stated, never the one asked about.
        for o_attr, o_say, _, _ in others:
            segments.insert(
                rng.randrange(len(segments) + 1),
                Segment("user", o_say.format(v=_value(rng, o_attr))),
            )
        return segments, question, NOT_MENTIONED, (NOT_MENTIONED,)
    value = _value(rng, attr)
    where = rng.choice(("user", "tool_output", "document"))
    if where == "user":
        fact = Segment("user", say.format(v=value))
    elif where == "tool_output":
        fact = Segment("tool_output", json.dumps({"note": say.format(v=value)}, sort_keys=True))
    else:
        fact = Segment("document", f"Notes. {say.format(v=value)} End of notes.")
    depth = rng.randrange(len(segments) // 2 + 1)
    segments.insert(depth, fact)
    distractor_attr, distractor_say, _, _ = others[0]
    segments.insert(
        rng.randrange(len(segments) + 1),
        Segment("user", distractor_say.format(v=_value(rng, distractor_attr))),
    )
    if task == "fact_update":
        new = value
        while new == value:
            new = _value(rng, attr)
        # The update always comes after the first statement.
        at = rng.randrange(segments.index(fact) + 1, len(segments) + 1)
        segments.insert(at, Segment("user", update.format(v=new)))
        value = new
    return segments, question, value, (value,)


def _tool_call(rng: random.Random, size: int) -> tuple[list[Segment], str, str, tuple[str, ...]]:
    listing = "Tools: " + "; ".join(f"{name}({arg})" for name, (arg, _) in sorted(_TOOLS.items()))
    segments = [Segment("system", listing), *_chitchat(rng, max(1, size // 4))]
    name = rng.choice(sorted(_TOOLS))
    arg, choices = _TOOLS[name]
    value = rng.choice(choices) if choices else str(rng.randint(1000, 9999))
    call = call_text(name, {arg: value})
    return segments, _TOOL_QUESTIONS[name].format(v=value), call, (call,)


def make_example(task: TaskName, seed: int, *, size: int = 16) -> TaskExample:
    """One example of ``task``; ``size`` scales the context (noise sentences or turns)."""
    if size < 1:
        raise InvalidInput("size must be at least 1", size=size)
    rng = random.Random(f"{task}:{seed}:{size}")
    match task:
        case "niah_single" | "niah_multikey" | "niah_multivalue":
            segments, question, answer, refs = _niah(task, rng, size)
        case "variable_tracking":
            segments, question, answer, refs = _variable_tracking(rng, size)
        case "memory_qa" | "fact_update" | "unanswerable":
            segments, question, answer, refs = _memory(task, rng, size)
        case "tool_call":
            segments, question, answer, refs = _tool_call(rng, size)
        case _:
            assert_never(task)
    return TaskExample(
        task, seed, tuple(segments), question, answer, refs, calls_tool=task == "tool_call"
    )


def mixed_example(seed: int, *, size: int = 16, tasks: tuple[TaskName, ...] = TASKS) -> TaskExample:
    """An example of a task drawn by ``seed`` from ``tasks`` (the SFT stream)."""
    if not tasks:
        raise InvalidInput("tasks must not be empty")
    task = tasks[random.Random(f"mix:{seed}").randrange(len(tasks))]
    return make_example(task, seed, size=size)


def score(example: TaskExample, output: str) -> float:
    """RULER's metric: the fraction of reference strings found in the output."""
    found = sum(ref.lower() in output.lower() for ref in example.references)
    return found / len(example.references)
