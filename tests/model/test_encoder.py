from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refrag_agent import ModelError
from refrag_agent.model.config import EncoderConfig
from refrag_agent.model.encoder import ChunkEncoder

TEXTS = ["my locker code is 4821", "a", "the meeting moved to thursday at noon in room 12b"]


def test_default_minilm_loads_offline(minilm: ChunkEncoder) -> None:
    vecs = minilm.encode(TEXTS)
    assert vecs.shape == (3, 384) and vecs.dtype == torch.float32
    assert torch.isfinite(vecs).all()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_local_encoder_batches_like_one_by_one(tiny_bert_dir: Path, pooling: str) -> None:
    enc = ChunkEncoder.load(EncoderConfig(path=str(tiny_bert_dir), pooling=pooling, batch_size=2))
    batched = enc.encode(TEXTS)
    single = torch.cat([enc.encode([t]) for t in TEXTS])
    assert batched.shape == (3, 32)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_fingerprint_tracks_weights_and_config(tiny_bert_dir: Path) -> None:
    enc = ChunkEncoder.load(EncoderConfig(path=str(tiny_bert_dir)))
    same = ChunkEncoder.load(EncoderConfig(path=str(tiny_bert_dir)))
    other_pooling = ChunkEncoder.load(EncoderConfig(path=str(tiny_bert_dir), pooling="cls"))
    assert enc.fingerprint == same.fingerprint != other_pooling.fingerprint
    before = enc.fingerprint
    with torch.no_grad():
        next(enc.model.parameters()).add_(0.01)
    enc.invalidate_fingerprint()
    assert enc.fingerprint != before


def test_fingerprint_ignores_library_version_and_new_defaults(tiny_bert_dir: Path) -> None:
    # A transformers release stamps its version into every config and may add defaults;
    # neither changes what the encoder computes, so neither may change the fingerprint.
    enc = ChunkEncoder.load(EncoderConfig(path=str(tiny_bert_dir)))
    before = enc.fingerprint
    moved = ChunkEncoder.load(EncoderConfig(path=str(tiny_bert_dir)))
    moved.model.config.transformers_version = "99.0.0"
    moved.model.config.some_default_a_future_release_adds = {"enabled": True}
    moved.model.config._name_or_path = "/somewhere/else"
    assert moved.fingerprint == before
    moved.model.config.hidden_act = "relu"  # this one changes the computation
    moved.invalidate_fingerprint()
    assert moved.fingerprint != before
    assert moved.manifest.differences(enc.manifest) == [
        "field hidden_act: recorded 'gelu', found 'relu'"
    ]


def test_bundled_fingerprint_is_stable_on_this_install() -> None:
    # The bundled checkpoint was stamped under one transformers release and must load
    # under every release the dependency range admits.
    from refrag_agent.engines import BUNDLED_MODEL
    from refrag_agent.model.config import RefragConfig

    recorded = RefragConfig.read(BUNDLED_MODEL).fingerprints["encoder"]["digest"]
    assert ChunkEncoder.load().fingerprint == recorded


def test_missing_encoder_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        ChunkEncoder.load(EncoderConfig(path=str(tmp_path / "nope")))
    assert "fix" in err.value.context
