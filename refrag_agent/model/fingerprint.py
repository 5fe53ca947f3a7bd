"""Content fingerprints: what a component computes, never which library wrote it.

A fingerprint is a small manifest and its digest:

- ``fields``: the settings that change the component's output, read from an explicit list
  per component (sizes, vocabulary, activation, normalisation eps, pooling ...). A config
  is never hashed whole: ``transformers`` stamps its own version into every config and
  each release may add defaults, and neither changes what a model computes.
- ``tensors``: one digest per tensor (name, shape, dtype and the raw values; see
  :mod:`refrag_agent.model.tensor_digest`, kept apart so this module imports no torch).

The manifest is stored beside the digest (``refrag.json``), so when two fingerprints
differ the error can say which field or which tensor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refrag_agent.errors import ModelError

# Text whose token ids stand for a tokenizer's behaviour: letters, digits, code, spacing,
# non-Latin scripts and emoji. Two tokenizers that split it alike and share the vocabulary
# size and special tokens are taken to be the same tokenizer.
TOKENIZER_PROBE = (
    "The locker code is 4821; meet in room 12B at 09:30 on 2026-11-29.\n"
    "  def f(x):\treturn {'a': x ** 2}  # café, naïve, Zürich, 東京, Москва, 🙂\n"
    "https://example.com/a?b=c&d=e MiXeD-CaSe_words, 3.14159 1,000,000 ...!?"
)


@dataclass(frozen=True, eq=True)
class Fingerprint:
    """A component's compute-relevant settings and per-tensor digests; see the module doc."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    tensors: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        payload = json.dumps(
            {"fields": dict(self.fields), "tensors": dict(self.tensors)}, sort_keys=True
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]

    def differences(self, recorded: Fingerprint, *, limit: int = 8) -> list[str]:
        """What differs from ``recorded``, one phrase per field or tensor (at most ``limit``)."""
        out: list[str] = []
        for name in sorted(set(self.fields) | set(recorded.fields)):
            was, now = recorded.fields.get(name), self.fields.get(name)
            if was != now:
                out.append(f"field {name}: recorded {was!r}, found {now!r}")
        for name in sorted(set(self.tensors) | set(recorded.tensors)):
            was, now = recorded.tensors.get(name), self.tensors.get(name)
            if was is None:
                out.append(f"tensor {name}: not in the recorded weights")
            elif now is None:
                out.append(f"tensor {name}: missing")
            elif was != now:
                out.append(f"tensor {name}: {_tensor_change(was, now)}")
        if len(out) > limit:
            out = [*out[:limit], f"... and {len(out) - limit} more"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "fields": dict(self.fields), "tensors": dict(self.tensors)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fingerprint:
        try:
            fields = dict(data["fields"])
            tensors = {str(k): str(v) for k, v in dict(data["tensors"]).items()}
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError("a recorded fingerprint is malformed", error=str(e)) from e
        return cls(fields=fields, tensors=tensors)


def _tensor_change(was: str, now: str) -> str:
    was_shape, was_dtype, _ = was.split("|")
    now_shape, now_dtype, _ = now.split("|")
    if was_shape != now_shape:
        return f"shape {was_shape} recorded, {now_shape} found"
    if was_dtype != now_dtype:
        return f"dtype {was_dtype} recorded, {now_dtype} found"
    return "values differ"


def json_value(value: Any) -> Any:
    """``value`` as plain JSON data (tuples become lists, unknown objects their str)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def config_fields(config: Any, names: Iterable[str]) -> dict[str, Any]:
    """The named attributes of a config object; an attribute it lacks is recorded as None."""
    return {name: json_value(getattr(config, name, None)) for name in names}


def ids_digest(ids: Sequence[int]) -> str:
    return hashlib.sha256(json.dumps(list(ids)).encode("ascii")).hexdigest()[:24]


def texts_digest(items: Iterable[tuple[str, int]]) -> str:
    """Digest of (text, id) pairs in a stable order, e.g. a vocabulary."""
    digest = hashlib.sha256()
    for text, index in sorted(items, key=lambda item: (item[1], item[0])):
        digest.update(f"{index}\0{text}\n".encode("utf-8", errors="surrogatepass"))
    return digest.hexdigest()[:24]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (files of any size)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
