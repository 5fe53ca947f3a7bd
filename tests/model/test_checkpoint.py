from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from refrag_agent import InvalidInput, ModelError
from refrag_agent.model.checkpoint import PROJECTOR_FILE, upgrade_checkpoint
from refrag_agent.model.config import CONFIG_FILE, FORMAT_VERSION, EncoderConfig
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel, load_checkpoint
from refrag_agent.model.tiny import random_decoder
from refrag_agent.policies import PolicyConfig, PolicyNetwork, load_policy, save_policy

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
    state = load_file(str(saved / PROJECTOR_FILE))
    state["fc2.bias"] = state["fc2.bias"] + 1.0
    save_file(state, str(saved / PROJECTOR_FILE))
    with pytest.raises(ModelError, match="projector differs") as err:
        load_checkpoint(saved, encoder=minilm)
    assert err.value.context["differs"] == ["tensor fc2.bias: values differ"]
    assert PROJECTOR_FILE in err.value.context["fix"]
    upgrade_checkpoint(saved)  # replaced on purpose: re-stamped from the files
    torch.testing.assert_close(
        load_checkpoint(saved, encoder=minilm).projector.fc2.bias, state["fc2.bias"]
    )


def test_encoder_fingerprint_mismatch(saved: Path, minilm: ChunkEncoder) -> None:
    other = ChunkEncoder(minilm.model, minilm.tokenizer, EncoderConfig(pooling="cls"))
    with pytest.raises(ModelError, match="encoder differs") as err:
        load_checkpoint(saved, encoder=other)
    assert err.value.context["path"].endswith(CONFIG_FILE)
    assert err.value.context["differs"] == ["field pooling: recorded 'mean', found 'cls'"]
    assert "train --stage reconstruct" in err.value.context["fix"]
    assert load_checkpoint(saved, encoder=other, check_encoder=False).k == 16


def test_changed_decoder_tensor_is_named(saved: Path, minilm: ChunkEncoder) -> None:
    weights = saved / "decoder" / "model.safetensors"
    state = load_file(str(weights))
    name = next(k for k in sorted(state) if k.endswith("mlp.up_proj.weight"))
    state[name] = state[name] * 0.5
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(ModelError, match="decoder differs") as err:
        load_checkpoint(saved, encoder=minilm)
    assert err.value.context["differs"] == [f"tensor {name}: values differ"]


def test_changed_tokenizer_is_named(saved: Path, minilm: ChunkEncoder) -> None:
    path = saved / "tokenizer" / "tiktoken.json"
    payload = json.loads(path.read_text())
    payload["special_tokens"]["<|extra|>"] = max(payload["special_tokens"].values()) + 1
    path.write_text(json.dumps(payload))
    with pytest.raises(ModelError, match="tokenizer differs") as err:
        load_checkpoint(saved, encoder=minilm)
    assert any("vocab_size" in d for d in err.value.context["differs"])


def test_format_1_is_still_read_and_can_be_upgraded(
    saved: Path, minilm: ChunkEncoder, llama: RefragModel
) -> None:
    data = json.loads((saved / CONFIG_FILE).read_text())
    del data["fingerprints"]
    data.update(format_version=1, encoder_fingerprint="0" * 32, projector_sha256="0" * 64)
    (saved / CONFIG_FILE).write_text(json.dumps(data))
    assert load_checkpoint(saved, encoder=minilm).config.fingerprints == {}
    upgraded = upgrade_checkpoint(saved)
    assert upgraded.format_version == FORMAT_VERSION == 2
    assert upgraded.fingerprints["encoder"]["digest"] == minilm.fingerprint
    assert load_checkpoint(saved, encoder=minilm).config == llama.config


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


@pytest.fixture
def with_policy(llama: RefragModel, tmp_path: Path) -> tuple[Path, PolicyNetwork]:
    network = PolicyNetwork(PolicyConfig(embed_dim=llama.encoder.dim))
    llama.policy = network
    try:
        return llama.save(tmp_path / "with-policy", save_policy=save_policy), network
    finally:
        llama.policy = None


def test_learned_policy_travels_with_the_checkpoint(
    with_policy: tuple[Path, PolicyNetwork], llama: RefragModel
) -> None:
    saved, network = with_policy
    loaded = RefragModel.load(saved, encoder=llama.encoder, load_policy=load_policy)
    assert isinstance(loaded.policy, PolicyNetwork)
    for name, value in network.state_dict().items():
        torch.testing.assert_close(loaded.policy.state_dict()[name], value)
    # The model layer does not know the policy's class: without its loader, no policy.
    assert RefragModel.load(saved, encoder=llama.encoder).policy is None


def test_changed_policy_fails_the_load(
    with_policy: tuple[Path, PolicyNetwork], llama: RefragModel
) -> None:
    saved, _ = with_policy
    weights = saved / "policy" / "policy.safetensors"
    state = load_file(str(weights))
    name = next(iter(state))
    state[name] = state[name] + 1.0
    save_file(state, str(weights))
    with pytest.raises(ModelError, match="policy") as err:
        RefragModel.load(saved, encoder=llama.encoder, load_policy=load_policy)
    assert err.value.context["component"] == "policy"


def test_a_policy_is_saved_and_upgraded_only_with_its_functions(
    with_policy: tuple[Path, PolicyNetwork], llama: RefragModel, tmp_path: Path
) -> None:
    saved, network = with_policy
    llama.policy = network
    try:
        with pytest.raises(InvalidInput, match="save_policy"):
            llama.save(tmp_path / "no-saver")
    finally:
        llama.policy = None
    assert not (tmp_path / "no-saver").exists()
    with pytest.raises(InvalidInput, match="load_policy"):
        upgrade_checkpoint(saved)
    upgraded = upgrade_checkpoint(saved, load_policy=load_policy)
    assert "policy" in upgraded.fingerprints
