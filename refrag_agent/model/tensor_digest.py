"""Digests of tensors' values, for content fingerprints (:mod:`.fingerprint`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch


def tensor_digest(tensor: torch.Tensor) -> str:
    """``shape|dtype|sha256`` of one tensor's values."""
    flat = tensor.detach().contiguous().cpu().reshape(-1)
    raw = flat.view(torch.uint8).numpy()  # hashed through the buffer, without a copy
    shape = "x".join(str(n) for n in tensor.shape) or "scalar"
    dtype = str(tensor.dtype).removeprefix("torch.")
    return f"{shape}|{dtype}|{hashlib.sha256(raw.data).hexdigest()[:24]}"


def tensor_digests(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """One digest per entry of a state dict, by name."""
    return {name: tensor_digest(t) for name, t in sorted(state.items())}
