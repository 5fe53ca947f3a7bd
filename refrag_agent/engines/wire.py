"""Tensors and placement plans as JSON, both ways; the decoding side trusts nothing.

:class:`~refrag_agent.engines.RemoteEngine` writes plans and the server
(:mod:`refrag_agent.serve`) reads them, so both import this module.

A tensor travels as ``{"dtype": "float32", "shape": [rows, cols], "data": <base64>}``:
raw little-endian float32 bytes, never pickle. For tools that already produce vLLM's
payload, ``{"format": "torch", "data": <base64 of torch.save(tensor)>}`` is accepted too.
That one goes through ``torch.load`` and so gets every guard vLLM's CVE-2025-62164 taught:
a size check before decoding, ``weights_only=True``, sparse invariants checked, and only
a dense float matrix of the expected width let through. Values must be finite and at
most :data:`MAX_ABS` in magnitude.

A plan travels as ``{"placements": [...], "chunk_embeddings": <tensor>}`` with one object
per placement: ``{"tokens": [ids]}``, ``{"expanded": [ids], "row": r}`` or
``{"compressed": r, "n_tokens": n}`` (see :mod:`refrag_agent.model.assembly`).
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np
import torch

from refrag_agent.errors import InvalidInput
from refrag_agent.model.assembly import (
    CompressedChunk,
    ExpandedChunk,
    Placement,
    PlacementPlan,
    TokenSpan,
)

TORCH_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# The largest |value| an embedding may hold. Encoder outputs are of order 1 (MiniLM's are
# unit vectors); finite values near float32's limit overflow the projector's matmul to
# inf and the decoder's logits to NaN, so they are refused here, not failed on there.
MAX_ABS = 1e4
# torch.save's zip container around the raw values: headers, pickle, alignment.
_TORCH_OVERHEAD = 64 * 1024


def tensor_to_wire(tensor: torch.Tensor) -> dict[str, Any]:
    """A 2-D tensor as raw little-endian float32 bytes, base64, with its shape."""
    values = tensor.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4")
    return {
        "dtype": "float32",
        "shape": list(values.shape),
        "data": base64.b64encode(values.tobytes()).decode("ascii"),
    }


def tensor_from_wire(value: Any, *, field: str, width: int, max_rows: int) -> torch.Tensor:
    """Decode an untrusted tensor payload into a float32 ``(rows, width)`` tensor.

    Sizes are checked before the base64 is decoded; any malformed, oversized, sparse,
    non-float, misshapen or non-finite payload, or one holding a value beyond
    :data:`MAX_ABS` in magnitude, is an :class:`InvalidInput`.
    """
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be an object with dtype, shape and data", field=field)
    fmt = value.get("format", "raw")
    data = value.get("data")
    if not isinstance(data, str):
        raise InvalidInput(f"{field}.data must be a base64 string", field=field)
    raw_limit = max_rows * width * 4 + (_TORCH_OVERHEAD if fmt == "torch" else 0)
    if len(data) > 4 * (raw_limit // 3 + 1):
        raise InvalidInput(
            f"{field} is larger than {max_rows} rows of width {width} allow", field=field
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInput(f"{field}.data is not valid base64", field=field) from e
    if fmt == "raw":
        tensor = _raw_tensor(raw, value, field=field, width=width, max_rows=max_rows)
    elif fmt == "torch":
        tensor = _torch_tensor(raw, field=field)
    else:
        raise InvalidInput(f"{field}.format must be 'raw' or 'torch'", field=field, format=fmt)
    rows = int(tensor.shape[0]) if tensor.dim() == 2 else -1
    if tensor.dim() != 2 or tensor.shape[1] != width or not 1 <= rows <= max_rows:
        raise InvalidInput(
            f"{field} must have shape (rows, {width}) with 1 <= rows <= {max_rows}",
            field=field,
            shape=list(tensor.shape),
        )
    tensor = tensor.to(torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise InvalidInput(f"{field} holds NaN or infinite values", field=field)
    if bool((tensor.abs() > MAX_ABS).any()):
        raise InvalidInput(
            f"{field} holds values beyond +-{MAX_ABS:g}; embeddings are encoder outputs",
            field=field,
            max_abs=MAX_ABS,
        )
    return tensor


def _raw_tensor(
    raw: bytes, value: dict[str, Any], *, field: str, width: int, max_rows: int
) -> torch.Tensor:
    if value.get("dtype") != "float32":
        raise InvalidInput(f"{field}.dtype must be 'float32'", field=field)
    shape = value.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
        or not 1 <= shape[0] <= max_rows
        or shape[1] != width
    ):
        raise InvalidInput(
            f"{field}.shape must be [rows, {width}] with 1 <= rows <= {max_rows}",
            field=field,
            shape=repr(shape)[:80],
        )
    if len(raw) != shape[0] * shape[1] * 4:
        raise InvalidInput(
            f"{field}.data does not hold rows x cols float32 values",
            field=field,
            expected_bytes=shape[0] * shape[1] * 4,
            got_bytes=len(raw),
        )
    values = np.frombuffer(raw, dtype="<f4").reshape(shape[0], shape[1])
    return torch.from_numpy(values.astype(np.float32))  # a copy: the buffer is read-only


def _torch_tensor(raw: bytes, *, field: str) -> torch.Tensor:
    """``torch.load`` restricted to plain tensors, with sparse invariants checked."""
    try:
        with torch.sparse.check_sparse_tensor_invariants():
            loaded = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    except Exception as e:  # the unpickler's failures have no common base class
        raise InvalidInput(
            f"{field} is not a tensor saved by torch.save (weights only)", field=field
        ) from e
    if not isinstance(loaded, torch.Tensor):
        raise InvalidInput(f"{field} must hold one tensor", field=field, got=type(loaded).__name__)
    if loaded.layout is not torch.strided:
        raise InvalidInput(
            f"{field} must be a dense tensor", field=field, layout=str(loaded.layout)
        )
    if loaded.dtype not in TORCH_DTYPES:
        raise InvalidInput(
            f"{field} must be float32, float16 or bfloat16", field=field, dtype=str(loaded.dtype)
        )
    return loaded.contiguous()


def plan_to_wire(plan: PlacementPlan) -> dict[str, Any]:
    """A plan as JSON (the inverse of :func:`plan_from_wire`)."""
    placements: list[dict[str, Any]] = []
    for p in plan.placements:
        if isinstance(p, TokenSpan):
            placements.append({"tokens": list(p.token_ids)})
        elif isinstance(p, ExpandedChunk):
            placements.append({"expanded": list(p.token_ids), "row": p.row})
        else:
            placements.append({"compressed": p.row, "n_tokens": p.n_tokens})
    out: dict[str, Any] = {"placements": placements}
    if plan.chunk_embeddings is not None:
        out["chunk_embeddings"] = tensor_to_wire(plan.chunk_embeddings)
    return out


def plan_from_wire(
    value: Any, *, vocab_size: int, width: int, max_rows: int, max_placements: int
) -> PlacementPlan:
    """Decode an untrusted plan; token ids must lie in ``[0, vocab_size)``."""
    if not isinstance(value, dict) or not isinstance(value.get("placements"), list):
        raise InvalidInput("refrag.plan must be an object with a placements list")
    items = value["placements"]
    if len(items) > max_placements:
        raise InvalidInput("refrag.plan has too many placements", limit=max_placements)
    table = None
    if value.get("chunk_embeddings") is not None:
        table = tensor_from_wire(
            value["chunk_embeddings"],
            field="refrag.plan.chunk_embeddings",
            width=width,
            max_rows=max_rows,
        )
    placements: list[Placement] = []
    for i, item in enumerate(items):
        where = f"refrag.plan.placements[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} must be an object")
        if "tokens" in item:
            placements.append(TokenSpan(token_ids(item["tokens"], vocab_size, field=where)))
        elif "expanded" in item:
            ids = token_ids(item["expanded"], vocab_size, field=where)
            placements.append(ExpandedChunk(ids, row=_int(item.get("row", -1), where)))
        elif "compressed" in item:
            row = _int(item["compressed"], where)
            n_tokens = _int(item.get("n_tokens", 0), where)
            if n_tokens < 0:
                raise InvalidInput(f"{where}.n_tokens must be >= 0", field=where)
            placements.append(CompressedChunk(row, n_tokens=n_tokens))
        else:
            raise InvalidInput(f"{where} needs one of tokens, expanded or compressed")
    return PlacementPlan(tuple(placements), table)


def token_ids(value: Any, vocab_size: int, *, field: str) -> tuple[int, ...]:
    """A non-empty list of token ids, each an ``int`` in ``[0, vocab_size)``."""
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{field} must be a non-empty list of token ids", field=field)
    if not all(type(t) is int and 0 <= t < vocab_size for t in value):
        raise InvalidInput(
            f"{field} holds a token id outside [0, {vocab_size})", field=field, vocab=vocab_size
        )
    return tuple(value)


def _int(value: Any, field: str) -> int:
    if type(value) is not int:
        raise InvalidInput(f"{field} must hold integers", field=field)
    return int(value)
