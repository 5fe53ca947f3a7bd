from __future__ import annotations

from pathlib import Path

import pytest

from refrag_agent import ModelError
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.tokenizer import (
    HFTokenizer,
    TiktokenTokenizer,
    Tokenizer,
    load_tokenizer,
)

TEXT = "Locker 4821 — café, naïve, 東京 and emoji 🙂."


def test_tiktoken_round_trip_and_specials(byte_tokenizer: TiktokenTokenizer) -> None:
    assert isinstance(byte_tokenizer, Tokenizer)
    assert byte_tokenizer.decode(byte_tokenizer.encode(TEXT)) == TEXT
    assert byte_tokenizer.vocab_size == 256 + len(byte_tokenizer.special_tokens)
    eos = byte_tokenizer.eos_id
    assert eos is not None and byte_tokenizer.encode("<|eos|>", allow_special=True) == [eos]
    # Special-token text typed by a user is plain text, never a control token.
    assert eos not in byte_tokenizer.encode("<|eos|>")


def test_tiktoken_save_load(byte_tokenizer: TiktokenTokenizer, tmp_path: Path) -> None:
    byte_tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.encode(TEXT) == byte_tokenizer.encode(TEXT)
    assert loaded.special_tokens == byte_tokenizer.special_tokens


def test_hf_tokenizer_protocol(minilm: ChunkEncoder, tmp_path: Path) -> None:
    minilm.tokenizer.save_pretrained(str(tmp_path))
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, HFTokenizer) and isinstance(tok, Tokenizer)
    ids = tok.encode("hello world")
    assert tok.decode(ids) == "hello world"
    assert tok.vocab_size == len(minilm.tokenizer)
    assert "[SEP]" in tok.special_tokens and tok.pad_id == minilm.tokenizer.pad_token_id
    tok.save(tmp_path / "again")
    assert load_tokenizer(tmp_path / "again").encode("hello world") == ids


def test_missing_tokenizer_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        load_tokenizer(tmp_path)
    assert err.value.context["path"] == str(tmp_path) and "fix" in err.value.context
