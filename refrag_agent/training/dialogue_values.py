"""Values of the natural dialogues: PINs, numbers, codes, references, people, dates, times,
places and rooms, written in the style of the family's pools (see ``dialogues``)."""

from __future__ import annotations

import random

from typing_extensions import assert_never

from refrag_agent.training.dialogue_pools import Attribute, Pools

# Waking hours on the 12-hour clock, so a dinner is never booked for 4 am.
_CLOCK_HOURS = [(h, "am") for h in range(7, 12)] + [(h, "pm") for h in range(1, 10)]


class ValueDraw:
    """The values of one example; fact values never overlap one another as text.

    Values overlapping as text (``12B`` in ``212B``) would let :func:`tasks.score` accept
    the wrong one, so each fact value is unlike every earlier one, and filler values are
    unlike every fact value.
    """

    def __init__(self, rng: random.Random, pools: Pools) -> None:
        self.rng = rng
        self.pools = pools
        self.refs: list[str] = []

    def _clashes(self, ref: str) -> bool:
        low = ref.lower()
        return any(low in r or r in low for r in self.refs)

    def fact(self, attr: Attribute) -> tuple[str, str]:
        """A new value (answer text, reference) for ``attr``, unlike any value drawn so far."""
        while True:
            answer, ref = self._value(attr)
            if not self._clashes(ref):
                self.refs.append(ref.lower())
                return answer, ref

    def filler(self, kind: str) -> str:
        """A value for filler text: it may repeat, but never overlaps a fact's value."""
        while True:
            if kind == "number":
                text = str(self.rng.randint(2, 99))
            elif kind == "person":
                text = self._person()[0]
            elif kind == "date":
                text = self._date()
            elif kind == "time":
                text = self._time()[0]
            else:
                text = self.rng.choice(self.pools.places)
            if not self._clashes(text):
                return text

    def _value(self, attr: Attribute) -> tuple[str, str]:
        rng, p = self.rng, self.pools
        run_on = p.code_shape == "run_on"
        match attr.kind:
            case "pin":
                text = f"{rng.randint(1000, 9999)}"
                return text, text
            case "number":
                low, high = attr.digits
                text = f"{rng.randint(10 ** (low - 1), 10**high - 1)}"
                return text, text
            case "code":
                letters = "".join(rng.choices(p.code_letters, k=3 if run_on else 2))
                digits = (
                    f"{rng.randint(100_000, 999_999)}" if run_on else f"{rng.randint(1000, 9999)}"
                )
                text = f"{letters}{digits}" if run_on else f"{letters}-{digits}"
                return text, text
            case "ref":
                if run_on:
                    text = f"{rng.choice(p.code_letters)}{rng.randint(1_000_000, 9_999_999)}"
                else:
                    text = "".join(rng.choices(p.code_letters + "23456789", k=6))
                return text, text
            case "person":
                return self._person()
            case "date":
                text = self._date()
                return text, text
            case "time":
                return self._time()
            case "place":
                text = rng.choice(p.places)
                return text, text
            case "room":
                if run_on and attr.prefix == "gate":
                    body = f"{rng.choice(p.code_letters)}{rng.randint(10, 99)}"
                elif run_on:
                    body = f"{rng.randint(100, 999)}"
                else:
                    body = f"{rng.randint(1, 40)}{rng.choice('ABCD')}"
                return f"{attr.prefix} {body}", body
            case _:
                assert_never(attr.kind)

    def _person(self) -> tuple[str, str]:
        p = self.pools
        surname = self.rng.choice(p.surnames)
        if self.rng.random() < 0.5:
            return f"{self.rng.choice(p.titles)} {surname}", surname
        full = f"{self.rng.choice(p.first_names)} {surname}"
        return full, full

    def _date(self) -> str:
        month, day = self.rng.choice(self.pools.months), self.rng.randint(1, 28)
        return f"{month} {day}" if self.pools.date_style == "month_day" else f"{day} {month}"

    def _time(self) -> tuple[str, str]:
        minute = self.rng.choice((0, 5, 10, 15, 20, 30, 40, 45, 50))
        if self.pools.time_style == "24h":
            text = f"{self.rng.randint(6, 22):02d}:{minute:02d}"
            return text, text
        hour, half = self.rng.choice(_CLOCK_HOURS)
        clock = f"{hour}:{minute:02d}"
        return f"{clock} {half}", clock
