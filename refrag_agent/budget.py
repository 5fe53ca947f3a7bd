"""How many chunks may go back in as real tokens: the expansion budget of one decoder call.

A :class:`Budget` has three parts:

- a **total**: either ``tokens=`` (an absolute number of expanded tokens) or ``p=`` (a
  fraction of the context's expandable tokens). Give one, or neither: with neither nothing
  is expanded (every chunk goes in as one embedding).
- **per-domain caps** ``per_domain``: an ``int`` caps the domain at that many tokens, a
  ``float`` in ``[0, 1]`` at that fraction of the domain's own expandable tokens. ``1`` is
  one token, ``1.0`` is the whole domain. A cap only restricts: the total still applies.
- **pins**: segment ids whose chunks always go in as tokens. Pinned chunks are outside the
  budget: they are not charged to the total or to a domain, and ``p`` and fractional caps
  are fractions of the *unpinned* tokens only.
- **unexpanded**: what becomes of the chunks the policy does not expand. ``"compressed"``
  (the default, REFRAG): one projected embedding each. ``"left_out"``: they are not fed
  at all, and a segment none of whose chunks is fed (nor pinned) is left out whole, its
  frame too: a plain decoder's context of the chosen tokens only. With the ``recency``
  policy that is truncation to the newest tokens, with ``similarity`` retrieval of the
  best-matching chunks, with ``Budget(tokens=0, unexpanded="left_out")`` no memory beyond
  the pins; the baselines ``refrag-agent bench longmem`` sets beside REFRAG.

The policy spends the budget (``refrag_agent.policies``); every cap is enforced by masking
while chunks are chosen one by one, so a chunk that does not fit is never chosen.

REFRAG's effective compression rate with an expanded fraction ``p`` at chunk size ``k`` is
``k / (1 - p + k p)`` (:func:`effective_compression`); the plan of every call reports it.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from refrag_agent.errors import BudgetError

# Guards floor(p * n) against binary round-off, e.g. 0.29 * 100 = 28.999999999999996.
_FLOOR_EPS = 1e-9


def _check_fraction(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BudgetError(f"{field} must be a number in [0, 1]", field=field, value=value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BudgetError(f"{field} must be in [0, 1]", field=field, value=value)
    return float(value)


def _check_tokens(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BudgetError(f"{field} must be an integer token count", field=field, value=value)
    if value < 0:
        raise BudgetError(f"{field} must not be negative", field=field, value=value)
    return value


def fraction_of(fraction: float, n_tokens: int) -> int:
    """``floor(fraction * n_tokens)``, robust to binary round-off."""
    return math.floor(fraction * n_tokens + _FLOOR_EPS)


class Budget(BaseModel):
    """Total and per-domain expansion budgets, and pinned segments (see the module doc)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: int | None = None
    p: float | None = None
    per_domain: dict[str, int | float] = Field(default_factory=dict)
    pinned: frozenset[str] = frozenset()
    unexpanded: Literal["compressed", "left_out"] = "compressed"

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: object) -> object:
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                raise BudgetError(
                    "unknown budget fields", unknown=unknown, known=sorted(cls.model_fields)
                )
        return data

    @field_validator("tokens", mode="before")
    @classmethod
    def _valid_tokens(cls, value: object) -> int | None:
        # BudgetError is not a ValueError, so pydantic lets it through unwrapped.
        return None if value is None else _check_tokens(value, "tokens")

    @field_validator("p", mode="before")
    @classmethod
    def _valid_p(cls, value: object) -> float | None:
        return None if value is None else _check_fraction(value, "p")

    @field_validator("per_domain", mode="before")
    @classmethod
    def _valid_per_domain(cls, value: object) -> dict[str, int | float]:
        if not isinstance(value, dict):
            raise BudgetError("per_domain must be a dict of domain -> cap", value=value)
        caps: dict[str, int | float] = {}
        for domain, cap in value.items():
            if not isinstance(domain, str) or not domain:
                raise BudgetError("per_domain keys must be non-empty strings", domain=domain)
            field = f"per_domain[{domain!r}]"
            # int = tokens, float = fraction: the type carries the meaning, so keep it.
            caps[domain] = (
                _check_tokens(cap, field)
                if isinstance(cap, int) and not isinstance(cap, bool)
                else _check_fraction(cap, field)
            )
        return caps

    @field_validator("pinned", mode="before")
    @classmethod
    def _valid_pinned(cls, value: object) -> frozenset[str]:
        if isinstance(value, str) or not isinstance(value, (set, frozenset, list, tuple)):
            raise BudgetError("pinned must be a collection of segment ids", value=value)
        for segment_id in value:
            if not isinstance(segment_id, str) or not segment_id:
                raise BudgetError("pinned segment ids must be non-empty strings", id=segment_id)
        return frozenset(value)

    @field_validator("unexpanded", mode="before")
    @classmethod
    def _valid_unexpanded(cls, value: object) -> str:
        if value not in ("compressed", "left_out"):
            raise BudgetError("unexpanded must be 'compressed' or 'left_out'", value=value)
        return str(value)

    @model_validator(mode="after")
    def _one_total(self) -> Budget:
        if self.tokens is not None and self.p is not None:
            raise BudgetError(
                "give the total as tokens= or as p=, not both", tokens=self.tokens, p=self.p
            )
        return self

    def total_allowance(self, expandable_tokens: int) -> int:
        """Tokens the policy may expand out of ``expandable_tokens`` unpinned tokens."""
        _check_tokens(expandable_tokens, "expandable_tokens")
        if self.tokens is not None:
            return min(self.tokens, expandable_tokens)
        if self.p is not None:
            return fraction_of(self.p, expandable_tokens)
        return 0

    def domain_allowance(self, domain: str, domain_tokens: int) -> int | None:
        """Tokens a domain may expand out of its ``domain_tokens``; ``None`` if uncapped."""
        _check_tokens(domain_tokens, "domain_tokens")
        cap = self.per_domain.get(domain)
        if cap is None:
            return None
        if isinstance(cap, int):
            return min(cap, domain_tokens)
        return fraction_of(cap, domain_tokens)

    def is_pinned(self, segment_id: str) -> bool:
        """Whether the segment's chunks always go in as tokens."""
        return segment_id in self.pinned


def effective_compression(k: int, p: float) -> float:
    """REFRAG's effective compression rate ``k / (1 - p + k p)`` at expanded fraction ``p``.

    ``p = 0`` gives ``k`` (every chunk one position), ``p = 1`` gives ``1`` (plain tokens).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise BudgetError("chunk size k must be a positive integer", k=k)
    p = _check_fraction(p, "p")
    return k / (1.0 - p + k * p)


def expanded_fraction(expanded_tokens: int, total_tokens: int) -> float:
    """The ``p`` a plan actually spent: expanded tokens over all chunk tokens (0 if empty)."""
    _check_tokens(expanded_tokens, "expanded_tokens")
    _check_tokens(total_tokens, "total_tokens")
    if expanded_tokens > total_tokens:
        raise BudgetError(
            "cannot expand more tokens than there are",
            expanded_tokens=expanded_tokens,
            total_tokens=total_tokens,
        )
    return expanded_tokens / total_tokens if total_tokens else 0.0
