"""Library logging that stays silent until the application configures logging.

Every library module logs through ``log = get_logger(__name__)``. Each call decides where
the event goes: through structlog as configured when the application called
``structlog.configure()`` (the CLI does), otherwise to the standard ``logging`` logger of
the same name, as ``"event key=value ..."``. structlog's unconfigured default prints to
stdout, so it is never used. A ``NullHandler`` on the ``refrag_agent`` logger keeps
logging's last-resort handler from printing warnings to stderr: a script that configures
nothing sees nothing, and ``logging.basicConfig(level=logging.INFO)`` shows every event.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

logging.getLogger("refrag_agent").addHandler(logging.NullHandler())

# The caller's frame, seen from _emit: _emit <- Logger.<level> <- caller.
_STACKLEVEL = 3


class Logger:
    """A named logger with structlog's call shape: ``log.info("event", key=value)``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stdlib = logging.getLogger(name)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the traceback of the exception being handled."""
        self._emit("exception", logging.ERROR, event, fields)

    def _emit(self, method: str, level: int, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            getattr(structlog.get_logger(self.name), method)(event, **fields)
            return
        if not self._stdlib.isEnabledFor(level):
            return
        exc_info = bool(fields.pop("exc_info", method == "exception"))
        message = " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())])
        self._stdlib.log(level, message, exc_info=exc_info, stacklevel=_STACKLEVEL)


def get_logger(name: str) -> Logger:
    """The logger for a library module: ``log = get_logger(__name__)``."""
    return Logger(name)
