"""Reading a request body: its size, its time, and JSON that is safe to validate.

The body is parsed by pydantic-core's JSON parser, which stops at a fixed nesting depth
instead of recursing until the stack runs out (Python's ``json`` raises
``RecursionError`` on deep input). The parsed value is then walked without recursion: it
may nest at most ``max_depth`` levels, its floats must be finite (``1e400`` parses as
infinity) and its integers must fit 64 bits. So no value that cannot be computed with,
or written back as JSON, reaches validation or an error message.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pydantic_core
from starlette.requests import Request

from refrag_agent.serve.errors import ApiError

_INT64 = 2**63


async def read_body(request: Request, *, limit: int, timeout_s: float) -> bytes:
    """The body; 413 as soon as it is known to exceed ``limit`` bytes, 408 (and the
    connection closed) if it has not all arrived within ``timeout_s``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    try:
        return await asyncio.wait_for(_read(request, limit), timeout_s)
    except TimeoutError as e:
        raise ApiError(
            408,
            f"the request body did not arrive within {timeout_s:g} s",
            kind="request_timeout",
            headers={"Connection": "close"},
            limit_s=timeout_s,
        ) from e


async def _read(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"the request body exceeds {limit} bytes", kind="request_too_large", limit=limit
    )


def load_json(body: bytes, *, max_depth: int) -> Any:
    """The body as JSON, checked as the module docstring says; 400 otherwise."""
    try:
        data = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as e:  # malformed, not UTF-8, too deep for the parser
        raise ApiError(400, f"the body is not valid JSON: {e}", kind="invalid_json") from e
    _check_values(data, max_depth)
    return data


def _check_values(data: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            if isinstance(value, float) and not math.isfinite(value):
                raise _out_of_range()
            if type(value) is int and not -_INT64 <= value < _INT64:
                raise _out_of_range()
            continue
        if depth >= max_depth:
            raise ApiError(
                400,
                f"the body nests JSON deeper than {max_depth} levels",
                kind="invalid_json",
                max_depth=max_depth,
            )
        stack.extend((child, depth + 1) for child in children)


def _out_of_range() -> ApiError:
    return ApiError(
        400,
        "the body holds a number out of range: floats must be finite, integers within 64 bits",
        kind="invalid_json",
    )
