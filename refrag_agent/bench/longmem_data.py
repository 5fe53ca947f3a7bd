"""LoCoMo and LongMemEval files, read into one shape: conversations of dated turns, and
the questions asked after them.

The data sets are not ours to ship; the user passes the file. Formats, as their
repositories define them:

- **LoCoMo** (``snap-research/locomo``, ``data/locomo10.json``): a list of samples, each
  with ``conversation`` (``speaker_a``, ``speaker_b``, ``session_<n>``: a list of turns
  ``{speaker, dia_id, text}`` (an image share adds ``blip_caption``), and
  ``session_<n>_date_time``) and ``qa``: ``{question, answer, evidence, category}``.
  Category 5 is adversarial: the question asks about something never said, the item has
  an ``adversarial_answer`` and may have no ``answer``; the right reply says so.
- **LongMemEval** (``xiaowu0162/LongMemEval``, ``longmemeval_{s,m,oracle}.json``): a list
  of questions, each with its own history: ``question_id``, ``question_type``,
  ``question``, ``answer``, ``question_date``, ``haystack_dates``,
  ``haystack_session_ids`` and ``haystack_sessions`` (sessions of turns ``{role,
  content}``, ``has_answer`` on the evidence turns). An id ending ``_abs`` is an abstention
  question: its history does not hold the answer.

Every problem with the file raises :class:`~refrag_agent.errors.InvalidInput` naming the
item and field, before anything is run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from refrag_agent.errors import InvalidInput

LongmemFormat = Literal["locomo", "longmemeval"]
FORMATS: tuple[LongmemFormat, ...] = ("locomo", "longmemeval")

LOCOMO_CATEGORIES = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}
"""LoCoMo's category numbers as its evaluation script treats them (1: a list of answers
split on commas, 3: the first answer before a semicolon, 5: unanswerable)."""

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation: who said what, when."""

    role: Role
    speaker: str
    text: str
    date: str
    session: str
    turn_id: str

    def rendered(self) -> str:
        """The turn as the decoder reads it: the date and the speaker come with the text,
        so a turn read alone (retrieved, or the oldest kept) still says when and who."""
        who = f"{self.speaker}: " if self.speaker != self.role else ""
        return f"[{self.date}] {who}{self.text}" if self.date else f"{who}{self.text}"

    def metadata(self) -> dict[str, str]:
        return {
            "speaker": self.speaker,
            "date": self.date,
            "session": self.session,
            "turn_id": self.turn_id,
        }


@dataclass(frozen=True)
class Question:
    """A question asked after its conversation, with the reference answer."""

    qid: str
    question: str
    answer: str
    category: str
    unanswerable: bool
    date: str = ""
    evidence: tuple[str, ...] = ()
    locomo_category: int | None = None  # the raw number, which scoring depends on

    def asked(self) -> str:
        return f"[{self.date}] {self.question}" if self.date else self.question


@dataclass(frozen=True)
class Conversation:
    """One history replayed into a fresh session, and the questions asked after it."""

    cid: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]


def load_longmem(path: Path, fmt: str, *, limit: int | None = None) -> list[Conversation]:
    """Read ``path`` as ``fmt``; keep the first ``limit`` questions (file order) if given.

    Conversations left without a question are dropped.
    """
    if fmt not in FORMATS:
        raise InvalidInput(
            "unknown long-memory format", format=fmt, fix="use --format locomo or longmemeval"
        )
    if limit is not None and limit < 1:
        raise InvalidInput("limit must be at least 1", limit=limit, fix="pass --limit 1 or more")
    items = _read_list(path, fmt)
    reader = _locomo if fmt == "locomo" else _longmemeval
    conversations = [reader(item, i) for i, item in enumerate(items)]
    if limit is not None:
        kept, left = [], limit
        for conv in conversations:
            if left <= 0:
                break
            kept.append(Conversation(conv.cid, conv.turns, conv.questions[:left]))
            left -= len(kept[-1].questions)
        conversations = kept
    return [c for c in conversations if c.questions]


def _read_list(path: Path, fmt: str) -> list[Any]:
    if not path.is_file():
        raise InvalidInput(
            "no such data file",
            path=str(path),
            fix=f"pass the {fmt} JSON file you downloaded with --data",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInput(
            "the data file is not JSON", path=str(path), error=str(e), fix="pass the .json file"
        ) from e
    if not isinstance(data, list) or not data:
        raise InvalidInput(
            "the data file must hold a non-empty JSON list of items",
            path=str(path),
            found=type(data).__name__,
            fix=f"pass the {fmt} file as its authors publish it",
        )
    return data


def _field(item: Any, key: str, kind: type | tuple[type, ...], where: str, fmt: str) -> Any:
    if not isinstance(item, dict):
        raise InvalidInput(
            f"{where} is not a JSON object", found=type(item).__name__, fix=_wrong_format(fmt)
        )
    if key not in item:
        raise InvalidInput(
            f"{where} has no {key!r}", keys=sorted(item)[:12], fix=_wrong_format(fmt)
        )
    value = item[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidInput(
            f"{where}: {key!r} has the wrong type",
            found=type(value).__name__,
            fix=_wrong_format(fmt),
        )
    return value


def _wrong_format(fmt: str) -> str:
    other = "longmemeval" if fmt == "locomo" else "locomo"
    return f"check the file is {fmt} as published (or pass --format {other})"


_SESSION = re.compile(r"^session_(\d+)$")


def _locomo(item: Any, i: int) -> Conversation:
    where = f"item {i}"
    conv = _field(item, "conversation", dict, where, "locomo")
    qa = _field(item, "qa", list, where, "locomo")
    a = str(_field(conv, "speaker_a", str, f"{where}.conversation", "locomo"))
    b = str(_field(conv, "speaker_b", str, f"{where}.conversation", "locomo"))
    numbers = sorted(int(m.group(1)) for key in conv if (m := _SESSION.match(key)))
    turns: list[Turn] = []
    for n in numbers:
        at = f"{where}.conversation.session_{n}"
        session = _field(conv, f"session_{n}", list, f"{where}.conversation", "locomo")
        date = conv.get(f"session_{n}_date_time", "")
        date = date if isinstance(date, str) else str(date)
        for j, raw in enumerate(session):
            speaker = str(_field(raw, "speaker", str, f"{at}[{j}]", "locomo"))
            text = str(_field(raw, "text", str, f"{at}[{j}]", "locomo")).strip()
            caption = raw.get("blip_caption")
            if isinstance(caption, str) and caption.strip():
                text = f"{text} (shares a photo: {caption.strip()})".strip()
            if not text:
                continue
            role: Role = "assistant" if speaker == b and speaker != a else "user"
            turn_id = str(raw.get("dia_id", f"D{n}:{j + 1}"))
            turns.append(Turn(role, speaker, text, date, f"session_{n}", turn_id))
    if not turns:
        raise InvalidInput(
            f"{where}: the conversation has no turns",
            fix="each sample needs session_<n> lists of {speaker, dia_id, text}",
        )
    cid = str(item.get("sample_id", f"locomo-{i}"))
    questions = []
    for j, q in enumerate(qa):
        at = f"{where}.qa[{j}]"
        category = _field(q, "category", int, at, "locomo")
        if category not in LOCOMO_CATEGORIES:
            raise InvalidInput(
                f"{at}: unknown category", category=category, fix="LoCoMo categories are 1 to 5"
            )
        unanswerable = category == 5
        if "answer" not in q and not unanswerable:
            raise InvalidInput(f"{at} has no 'answer'", fix=_wrong_format("locomo"))
        answer = q.get("answer", "")
        evidence = q.get("evidence") or []
        questions.append(
            Question(
                qid=f"{cid}/{j}",
                question=str(_field(q, "question", str, at, "locomo")),
                answer="" if answer is None else str(answer),
                category=f"{category} {LOCOMO_CATEGORIES[category]}",
                unanswerable=unanswerable,
                evidence=tuple(str(e) for e in evidence) if isinstance(evidence, list) else (),
                locomo_category=category,
            )
        )
    return Conversation(cid, tuple(turns), tuple(questions))


def _longmemeval(item: Any, i: int) -> Conversation:
    where = f"item {i}"
    qid = str(_field(item, "question_id", (str, int), where, "longmemeval"))
    where = f"item {i} ({qid})"
    qtype = str(_field(item, "question_type", str, where, "longmemeval"))
    question = str(_field(item, "question", str, where, "longmemeval"))
    answer = _field(item, "answer", (str, int, float), where, "longmemeval")
    sessions = _field(item, "haystack_sessions", list, where, "longmemeval")
    dates = _field(item, "haystack_dates", list, where, "longmemeval")
    ids = item.get("haystack_session_ids") or [f"s{n}" for n in range(len(sessions))]
    if len(dates) != len(sessions) or len(ids) != len(sessions):
        raise InvalidInput(
            f"{where}: haystack_sessions, haystack_dates and haystack_session_ids differ in length",
            sessions=len(sessions),
            dates=len(dates),
            ids=len(ids),
            fix=_wrong_format("longmemeval"),
        )
    turns: list[Turn] = []
    for n, (session, date, sid) in enumerate(zip(sessions, dates, ids, strict=True)):
        at = f"{where}.haystack_sessions[{n}]"
        if not isinstance(session, list):
            raise InvalidInput(f"{at} is not a list of turns", fix=_wrong_format("longmemeval"))
        for j, raw in enumerate(session):
            role = _field(raw, "role", str, f"{at}[{j}]", "longmemeval")
            if role not in ("user", "assistant"):
                raise InvalidInput(
                    f"{at}[{j}]: role must be 'user' or 'assistant'",
                    role=role,
                    fix=_wrong_format("longmemeval"),
                )
            text = str(_field(raw, "content", str, f"{at}[{j}]", "longmemeval")).strip()
            if text:
                turns.append(Turn(role, role, text, str(date), str(sid), f"{sid}:{j}"))
    if not turns:
        raise InvalidInput(f"{where}: the history has no turns", fix=_wrong_format("longmemeval"))
    unanswerable = qid.endswith("_abs")
    evidence = tuple(t.turn_id for t, raw in _with_raw(sessions, turns) if raw)
    q = Question(
        qid=qid,
        question=question,
        answer=str(answer),
        category="abstention" if unanswerable else qtype,
        unanswerable=unanswerable,
        date=str(item.get("question_date") or ""),
        evidence=evidence,
    )
    return Conversation(qid, tuple(turns), (q,))


def _with_raw(sessions: list[Any], turns: list[Turn]) -> list[tuple[Turn, bool]]:
    """Each kept turn with its ``has_answer`` flag (turns with empty text were skipped)."""
    flags = [
        bool(raw.get("has_answer"))
        for session in sessions
        for raw in session
        if str(raw.get("content", "")).strip()
    ]
    return list(zip(turns, flags, strict=True))
