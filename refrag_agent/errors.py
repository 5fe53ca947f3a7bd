"""The one error tree of refrag-agent.

::

    RefragError
    ├── InvalidInput          the caller passed something unusable (text, ids, shapes, options)
    │   ├── BudgetError       a budget that cannot be honoured or is malformed
    │   └── ScopeError        a missing or unknown tenant/session scope
    └── RefragFailure         something failed that the caller did not get wrong
        ├── StoreError        the SQL timeline or the LanceDB chunk store failed
        ├── ModelError        a model, checkpoint or tokenizer could not be loaded or run
        └── DecoderUnavailable  the decoder (in-process or remote) cannot be reached

Caller mistakes derive from :class:`InvalidInput`; catch :class:`RefragFailure` for
everything that is worth retrying or reporting. Every error carries ``context``: the
values a user needs to act on it (a path, a field, an expected and an actual shape).
Third-party exceptions are wrapped at the boundary with ``raise ... from e``.
"""

from __future__ import annotations

from typing import Any


class RefragError(Exception):
    """Root of every error raised by refrag-agent."""

    def __init__(self, message: str, /, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = context

    def __str__(self) -> str:
        if not self.context:
            return self.message
        details = ", ".join(f"{key}={value!r}" for key, value in self.context.items())
        return f"{self.message} ({details})"


class InvalidInput(RefragError):
    """The caller passed something unusable; nothing was written or run."""


class BudgetError(InvalidInput):
    """An expansion budget is malformed or cannot be honoured."""


class ScopeError(InvalidInput):
    """A tenant/session scope is missing, malformed or unknown."""


class RefragFailure(RefragError):
    """A failure that is not the caller's mistake."""


class StoreError(RefragFailure):
    """The SQL timeline or the LanceDB chunk store failed."""


class ModelError(RefragFailure):
    """A model, checkpoint or tokenizer could not be loaded or run."""


class DecoderUnavailable(RefragFailure):
    """The decoder cannot be reached (a remote server down, or an engine closed)."""
