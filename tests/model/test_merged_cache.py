"""A checkpoint's adapter merged into its base once, cached, and read back on later loads.

A tiny random Llama stands in for the base: written into a fresh cache under the known
base's name with the ``conversion.json`` a conversion leaves, so nothing is converted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
import torch
from safetensors.torch import load_file, save_file
from structlog.testing import LogCapture

from refrag_agent.errors import ModelError
from refrag_agent.model.adapter import LoraSpec, adapter_fingerprint, add_lora, is_adapted
from refrag_agent.model.base_decoder import CONVERSION_FILE, SMOLLM2
from refrag_agent.model.checkpoint import upgrade_checkpoint
from refrag_agent.model.config import CONFIG_FILE
from refrag_agent.model.decoder import decoder_fingerprint, load_decoder
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.merged_cache import (
    ADAPTER_WEIGHTS,
    MERGE_FILE,
    adapter_files_fingerprint,
    merged_root,
)
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer

PROBE = torch.arange(1, 17).unsqueeze(0)  # (1, 16) ids


@pytest.fixture
def cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, byte_tokenizer: TiktokenTokenizer
) -> Path:
    """A user cache holding a tiny base decoder as if converted, named like the known base."""
    root = tmp_path / "cache"
    base = random_decoder("llama", vocab_size=byte_tokenizer.vocab_size, seed=3)
    base.save_pretrained(str(root / SMOLLM2.name))
    record = {"base": SMOLLM2.name, "decoder_fingerprint": decoder_fingerprint(base).to_dict()}
    (root / SMOLLM2.name / CONVERSION_FILE).write_text(json.dumps(record))
    monkeypatch.setenv("REFRAG_AGENT_CACHE", str(root))
    return root


@pytest.fixture
def checkpoint(
    cache: Path, tmp_path: Path, byte_tokenizer: TiktokenTokenizer, minilm: ChunkEncoder
) -> Path:
    """A model on that base with a LoRA adapter whose every weight is non-zero."""
    adapted = add_lora(load_decoder(cache / SMOLLM2.name), LoraSpec(rank=4, alpha=8))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if "lora_" in name:
                param.normal_(std=0.05)  # lora_B starts at zero: the merge would change nothing
    model = RefragModel.create(
        tokenizer=byte_tokenizer, decoder=adapted, encoder=minilm, base=SMOLLM2.name
    )
    return model.save(tmp_path / "model")


def _load(path: Path, encoder: ChunkEncoder, **kwargs: Any) -> RefragModel:
    return RefragModel.load(path, encoder=encoder, **kwargs)


def _logits(model: RefragModel) -> torch.Tensor:
    with torch.inference_mode():
        return model.decoder(input_ids=PROBE).logits  # type: ignore[no-any-return]


def _entry(cache: Path) -> Path:
    (entry,) = [p for p in merged_root(cache).iterdir() if p.is_dir()]
    return entry


EVENTS = {
    "merged decoder cached": "cached",
    "merged decoder read from cache": "read",
    "merged decoder cache entry is damaged: rebuilding": "damaged",
}


@contextmanager
def _events() -> Iterator[list[str]]:
    """The merged cache's events logged inside the block, in order, by short name.

    structlog is set to record every level (a CLI test may have left it at warnings) and
    put back as it was afterwards.
    """
    found: list[str] = []
    capture = LogCapture()
    configured, saved = structlog.is_configured(), structlog.get_config()
    structlog.configure(
        processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(0)
    )
    try:
        yield found
    finally:
        if configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()
    found.extend(EVENTS[e["event"]] for e in capture.entries if e["event"] in EVENTS)


def test_the_merge_is_written_once_then_read_back_with_the_same_logits(
    cache: Path, checkpoint: Path, minilm: ChunkEncoder
) -> None:
    with _events() as events:
        first = _load(checkpoint, minilm)
    assert not is_adapted(first.decoder)
    assert events == ["cached"]
    weights = _entry(cache) / "model.safetensors"
    written = weights.stat()

    with _events() as events:
        second = _load(checkpoint, minilm)
    assert events == ["read"]
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    # The cached weights are the merge's, bit for bit; both decode as the unmerged adapter.
    assert torch.equal(_logits(second), _logits(first))
    unmerged = _load(checkpoint, minilm, merge_adapter=False)
    assert is_adapted(unmerged.decoder)
    assert torch.allclose(_logits(unmerged), _logits(second), atol=1e-5)


def test_training_loads_keep_the_adapter_apart_and_write_no_merge(
    cache: Path, checkpoint: Path, minilm: ChunkEncoder
) -> None:
    model = _load(checkpoint, minilm, merge_adapter=False)
    assert is_adapted(model.decoder)
    assert not merged_root(cache).exists()


def _flip_a_byte(entry: Path) -> None:
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one value changed
    weights.write_bytes(bytes(data))


def _truncate(entry: Path) -> None:
    weights = entry / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4096])


def _drop_the_record(entry: Path) -> None:
    (entry / MERGE_FILE).unlink()  # as a copy interrupted before its last file


@pytest.mark.parametrize("damage", [_flip_a_byte, _truncate, _drop_the_record])
def test_a_damaged_entry_is_rebuilt_not_used(
    cache: Path, checkpoint: Path, minilm: ChunkEncoder, damage: Any
) -> None:
    expected = _logits(_load(checkpoint, minilm))
    damage(_entry(cache))
    with _events() as events:
        rebuilt = _load(checkpoint, minilm)
    assert events == ["damaged", "cached"]
    assert torch.equal(_logits(rebuilt), expected)
    with _events() as events:
        again = _load(checkpoint, minilm)
    assert events == ["read"]
    assert torch.equal(_logits(again), expected)


def test_an_adapter_changed_after_saving_is_refused_with_a_merge_cached(
    cache: Path, checkpoint: Path, minilm: ChunkEncoder
) -> None:
    _load(checkpoint, minilm)  # the true adapter's merge is now cached
    path = checkpoint / "adapter" / ADAPTER_WEIGHTS
    state = load_file(str(path))
    name = sorted(state)[0]
    state[name] = state[name] + 1.0
    save_file(state, str(path))
    with pytest.raises(ModelError, match="adapter differs") as caught:
        _load(checkpoint, minilm)
    assert any(name.replace(".weight", "") in line for line in caught.value.context["differs"])


def test_the_files_fingerprint_is_the_loaded_adapters(
    checkpoint: Path, minilm: ChunkEncoder
) -> None:
    model = _load(checkpoint, minilm, merge_adapter=False)
    found = adapter_files_fingerprint(checkpoint / "adapter")
    assert found == adapter_fingerprint(model.decoder)


def test_upgrading_an_adapted_checkpoint_keeps_its_adapter_fingerprint(
    checkpoint: Path, minilm: ChunkEncoder
) -> None:
    recorded = json.loads((checkpoint / CONFIG_FILE).read_text())["fingerprints"]
    upgraded = upgrade_checkpoint(checkpoint).fingerprints
    assert upgraded["adapter"] == recorded["adapter"]
    assert sorted(upgraded) == sorted(recorded)
    _load(checkpoint, minilm)  # and it loads, its adapter checked against the record


CHILD = """
import sys
from refrag_agent.model.refrag import RefragModel
RefragModel.load(sys.argv[1])
print("peft" in sys.modules)
"""


def test_a_cached_load_never_imports_peft(checkpoint: Path, minilm: ChunkEncoder) -> None:
    _load(checkpoint, minilm)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkpoint)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert out.stdout.strip().splitlines()[-1] == "False"
