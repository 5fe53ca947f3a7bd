"""One tokenizer protocol over tiktoken encodings and Hugging Face tokenizers.

The decoder's tokenizer decides chunk boundaries and token counts, so every count in
refrag-agent comes from it (never from a different model's tokenizer).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import tiktoken

from refrag_agent.errors import ModelError
from refrag_agent.model.fingerprint import TOKENIZER_PROBE, Fingerprint, ids_digest
from refrag_agent.model.quiet import quiet_transformers
from refrag_agent.template import REFRAG_TEMPLATE

TIKTOKEN_FILE = "tiktoken.json"
# Special tokens of the bundled decoder's chat template, in id order.
DEFAULT_SPECIALS = REFRAG_TEMPLATE.special_tokens
# GPT-2 style pre-tokenisation: words, numbers, punctuation runs, whitespace.
PRETOKENIZE_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


@runtime_checkable
class Tokenizer(Protocol):
    """What refrag-agent needs from a decoder tokenizer."""

    @property
    def name(self) -> str: ...

    @property
    def vocab_size(self) -> int: ...

    @property
    def special_tokens(self) -> dict[str, int]: ...

    @property
    def eos_id(self) -> int | None: ...

    @property
    def pad_id(self) -> int: ...

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def save(self, directory: Path) -> None: ...


class TiktokenTokenizer:
    """A tiktoken encoding, with its special tokens, saved as one JSON file."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding

    @classmethod
    def from_ranks(
        cls,
        ranks: dict[bytes, int],
        *,
        name: str,
        specials: Sequence[str] = DEFAULT_SPECIALS,
        pat_str: str = PRETOKENIZE_PATTERN,
    ) -> TiktokenTokenizer:
        """Build an encoding from BPE ranks; special tokens get the ids after them."""
        base = max(ranks.values()) + 1
        special_ids = {tok: base + i for i, tok in enumerate(specials)}
        encoding = tiktoken.Encoding(
            name=name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=special_ids
        )
        return cls(encoding)

    @classmethod
    def byte_level(cls, *, specials: Sequence[str] = DEFAULT_SPECIALS) -> TiktokenTokenizer:
        """256 byte tokens and no merges: works on any text, needs no training data."""
        return cls.from_ranks({bytes([i]): i for i in range(256)}, name="bytes", specials=specials)

    @property
    def name(self) -> str:
        return f"tiktoken:{self.encoding.name}"

    @property
    def vocab_size(self) -> int:
        return int(self.encoding.n_vocab)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self.encoding._special_tokens)

    @property
    def eos_id(self) -> int | None:
        return self.special_tokens.get(REFRAG_TEMPLATE.eos)

    @property
    def pad_id(self) -> int:
        specials = self.special_tokens
        return specials.get(REFRAG_TEMPLATE.pad, specials.get(REFRAG_TEMPLATE.eos, 0))

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        if allow_special:
            return self.encoding.encode(text, allowed_special="all")
        # Special-token text inside user content is encoded as plain text, never as control.
        return self.encoding.encode(text, disallowed_special=())

    def decode(self, ids: Sequence[int]) -> str:
        # Decoders often pad their vocabulary past the tokenizer's: ids beyond it are skipped.
        n_vocab = self.encoding.n_vocab
        return self.encoding.decode([i for i in ids if 0 <= i < n_vocab], errors="replace")

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        enc = self.encoding
        payload = {
            "name": enc.name,
            "pat_str": enc._pat_str,
            "ranks": {
                base64.b64encode(k).decode("ascii"): v for k, v in enc._mergeable_ranks.items()
            },
            "special_tokens": enc._special_tokens,
        }
        (directory / TIKTOKEN_FILE).write_text(json.dumps(payload), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> TiktokenTokenizer:
        payload = json.loads((directory / TIKTOKEN_FILE).read_text(encoding="utf-8"))
        ranks = {base64.b64decode(k): int(v) for k, v in payload["ranks"].items()}
        encoding = tiktoken.Encoding(
            name=payload["name"],
            pat_str=payload["pat_str"],
            mergeable_ranks=ranks,
            special_tokens={k: int(v) for k, v in payload["special_tokens"].items()},
        )
        return cls(encoding)


class HFTokenizer:
    """A Hugging Face tokenizer (``AutoTokenizer``) behind the same protocol."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, directory: Path) -> HFTokenizer:
        from transformers import AutoTokenizer

        try:
            with quiet_transformers():
                return cls(AutoTokenizer.from_pretrained(str(directory), local_files_only=True))
        except (OSError, ValueError) as e:
            raise ModelError("could not load a Hugging Face tokenizer", path=str(directory)) from e

    @property
    def name(self) -> str:
        return f"hf:{self.tokenizer.name_or_path}"

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def special_tokens(self) -> dict[str, int]:
        toks = self.tokenizer.all_special_tokens
        return {tok: int(self.tokenizer.convert_tokens_to_ids(tok)) for tok in toks}

    @property
    def eos_id(self) -> int | None:
        eos = self.tokenizer.eos_token_id
        return None if eos is None else int(eos)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        return 0 if pad is None else int(pad)

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        # split_special_tokens keeps "<|eos|>" typed by a user from becoming a control token.
        ids = self.tokenizer.encode(
            text, add_special_tokens=False, split_special_tokens=not allow_special
        )
        return [int(i) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))

    def save(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load a tokenizer saved by :meth:`Tokenizer.save` (tiktoken JSON or Hugging Face)."""
    path = Path(directory)
    if (path / TIKTOKEN_FILE).is_file():
        return TiktokenTokenizer.load(path)
    if (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
        return HFTokenizer.load(path)
    raise ModelError(
        f"no tokenizer found: expected {TIKTOKEN_FILE} or tokenizer.json",
        path=str(path),
        fix="save one with Tokenizer.save(directory)",
    )


def tokenizer_fingerprint(tokenizer: Tokenizer) -> Fingerprint:
    """What a tokenizer does: vocabulary size, special tokens and its ids for a probe text.

    Read through the protocol, never from the files, so a library that rewrites its
    tokenizer files in a new layout keeps the fingerprint while it splits text alike.
    """
    return Fingerprint(
        {
            "vocab_size": tokenizer.vocab_size,
            "special_tokens": dict(sorted(tokenizer.special_tokens.items())),
            "eos_id": tokenizer.eos_id,
            "pad_id": tokenizer.pad_id,
            "probe_ids": ids_digest(tokenizer.encode(TOKENIZER_PROBE)),
        }
    )
