"""HTTP error answers: every failure leaves the server as an OpenAI-style JSON error.

``{"error": {"message": ..., "type": ..., "code": <status>, "context": {...}}}``. Library
errors map by their class (caller mistakes are 400, an unavailable decoder 503, other
failures 500); :class:`ApiError` carries the HTTP-only cases (401, 403, 404, 408, 413,
429, 504). The body is always valid JSON: context values JSON cannot carry (infinity,
NaN, objects) travel as their ``repr``.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import JSONResponse

from refrag_agent.errors import DecoderUnavailable, InvalidInput, RefragError


class ApiError(Exception):
    """An answer with an HTTP status; raised inside a handler, never outside the server."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers or {}
        self.context = _jsonable(context)

    @classmethod
    def of(cls, error: RefragError) -> ApiError:
        """The HTTP answer for a library error."""
        if isinstance(error, InvalidInput):
            status, kind = 400, "invalid_request_error"
        elif isinstance(error, DecoderUnavailable):
            status, kind = 503, "decoder_unavailable"
        else:
            status, kind = 500, "server_error"
        return cls(status, error.message, kind=kind, **error.context)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.kind, "code": self.status}
        if self.context:
            error["context"] = self.context
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _jsonable(context: dict[str, Any]) -> dict[str, Any]:
    """Error context that JSON can carry: strings, integers, finite floats, booleans and
    ``None`` as they are, anything else (infinity and NaN included) as its ``repr``."""
    return {key: value if _plain(value) else repr(value) for key, value in context.items()}


def _plain(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int, bool, type(None)))
