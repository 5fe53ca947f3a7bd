from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from refrag_agent import ModelError
from refrag_agent.model.checkpoint import PROJECTOR_FILE, load_checkpoint
from refrag_agent.model.config import CONFIG_FILE, EncoderConfig
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder

from .conftest import LONG_TEXT


@pytest.fixture
def saved(llama: RefragModel, tmp_path: Path) -> Path:
    return llama.save(tmp_path / "ckpt")


def test_round_trip(llama: RefragModel, saved: Path, minilm: ChunkEncoder) -> None:
    loaded = load_checkpoint(saved, encoder=minilm)
    assert loaded.config == llama.config and loaded.k == 16
    chunks = llama.chunk(LONG_TEXT)
    plan = llama.plan(["<|user|>", (chunks, llama.encode(chunks), {1}), "?"])
    torch.testing.assert_close(loaded.logits([plan]), llama.logits([plan]))
    assert loaded.tokenizer.encode(LONG_TEXT) == llama.tokenizer.encode(LONG_TEXT)


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=CONFIG_FILE) as err:
        load_checkpoint(tmp_path)
    assert "fix" in err.value.context


def test_missing_projector(saved: Path, minilm: ChunkEncoder) -> None:
    (saved / PROJECTOR_FILE).unlink()
    with pytest.raises(ModelError, match=PROJECTOR_FILE):
        load_checkpoint(saved, encoder=minilm)


def test_changed_projector_weights(saved: Path, minilm: ChunkEncoder) -> None:
    with (saved / PROJECTOR_FILE).open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        load_checkpoint(saved, encoder=minilm)


def test_encoder_fingerprint_mismatch(saved: Path, minilm: ChunkEncoder) -> None:
    other = ChunkEncoder(minilm.model, minilm.tokenizer, EncoderConfig(pooling="cls"))
    with pytest.raises(ModelError, match="encoder differs") as err:
        load_checkpoint(saved, encoder=other)
    assert err.value.context["path"].endswith(CONFIG_FILE) and "fix" in err.value.context
    assert load_checkpoint(saved, encoder=other, check_encoder=False).k == 16


def test_wrong_dimensions(saved: Path, minilm: ChunkEncoder, byte_tokenizer) -> None:  # type: ignore[no-untyped-def]
    wider = random_decoder("llama", vocab_size=byte_tokenizer.vocab_size, hidden_size=96)
    with pytest.raises(ModelError, match="dimensions") as err:
        load_checkpoint(saved, encoder=minilm, decoder=wider)
    assert err.value.context["projector_in_out"] == (384, 64)


def test_missing_decoder_and_bad_json(saved: Path, minilm: ChunkEncoder) -> None:
    (saved / "decoder" / "config.json").unlink()
    with pytest.raises(ModelError, match=r"config\.json"):
        load_checkpoint(saved, encoder=minilm)
    (saved / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_checkpoint(saved, encoder=minilm)
    (saved / CONFIG_FILE).write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ModelError, match="format version"):
        load_checkpoint(saved, encoder=minilm)


def test_learned_policy_travels_with_the_checkpoint(llama: RefragModel, tmp_path: Path) -> None:
    from refrag_agent.policies import PolicyConfig, PolicyNetwork

    network = PolicyNetwork(PolicyConfig(embed_dim=llama.encoder.dim))
    llama.policy = network
    try:
        saved = llama.save(tmp_path / "with-policy")
    finally:
        llama.policy = None
    loaded = load_checkpoint(saved, encoder=llama.encoder)
    assert loaded.policy is not None
    for name, value in network.state_dict().items():
        torch.testing.assert_close(loaded.policy.state_dict()[name], value)
