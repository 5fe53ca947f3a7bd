"""Build what a run needs, once, under ``out_dir``: data, tokenizer, the starting model.

::

    out_dir/data/manifest.json     corpus files and sha256s, split rule, tokenizer, seeds
    out_dir/data/tokenizer/        the decoder's tokenizer (own BPE for the tiny preset)
    out_dir/data/{train,heldout}.npy   the token streams
    out_dir/<stage>/model/         the model each stage leaves (a RefragModel checkpoint)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refrag_agent.model.adapter import add_lora
from refrag_agent.model.base_decoder import base_decoder_dir, known_base, load_base_decoder
from refrag_agent.model.decoder import load_decoder
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import HFTokenizer, TiktokenTokenizer, Tokenizer, load_tokenizer
from refrag_agent.training.bpe import train_tokenizer
from refrag_agent.training.data import (
    array_sha256,
    build_corpus,
    tokenize_split,
    write_manifest,
)
from refrag_agent.training.presets import STAGES, Preset, StageName

DATA_DIR = "data"
MODEL_DIR = "model"


@dataclass(frozen=True)
class Prepared:
    tokenizer: Tokenizer
    train: np.ndarray  # (n_tokens,) int32
    heldout: np.ndarray
    manifest: dict[str, Any]


def _make_tokenizer(preset: Preset, texts: list[str]) -> Tokenizer:
    if preset.tokenizer == "bytes":
        return TiktokenTokenizer.byte_level()
    if preset.tokenizer == "bpe":
        return train_tokenizer(texts, n_merges=preset.bpe_merges, name=f"refrag-{preset.name}")
    if preset.base:
        return HFTokenizer.load(base_decoder_dir(known_base(preset.base)))
    return HFTokenizer.load(Path(preset.decoder.resolved_path()))


def build_data(preset: Preset, out_dir: Path) -> None:
    """Build the corpus, tokenizer and token streams (main process only)."""
    data = out_dir / DATA_DIR
    if (data / "manifest.json").is_file():
        return
    data.mkdir(parents=True, exist_ok=True)
    corpus = build_corpus(preset.corpus)
    bpe_texts = [d.text for d in corpus.train[: preset.bpe_train_files]]
    tokenizer = _make_tokenizer(preset, bpe_texts)
    tokenizer.save(data / "tokenizer")
    manifest = dict(corpus.manifest)
    for split in ("train", "heldout"):
        tokens = tokenize_split(corpus.split(split), tokenizer)
        np.save(data / f"{split}.npy", tokens)
        manifest[split] = {**manifest[split], "n_tokens": len(tokens),
                           "tokens_sha256": array_sha256(tokens)}  # fmt: skip
    manifest["tokenizer"] = {
        "name": tokenizer.name,
        "vocab_size": tokenizer.vocab_size,
        "kind": preset.tokenizer,
        "bpe_merges": preset.bpe_merges if preset.tokenizer == "bpe" else 0,
        "bpe_train_files": preset.bpe_train_files,
    }
    manifest["preset"] = preset.name
    manifest["seed"] = preset.seed
    # Written last: its presence marks the data as complete.
    write_manifest(data / "manifest.json", manifest)


def load_data(out_dir: Path) -> Prepared:
    data = out_dir / DATA_DIR
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    return Prepared(
        tokenizer=load_tokenizer(data / "tokenizer"),
        train=np.load(data / "train.npy"),
        heldout=np.load(data / "heldout.npy"),
        manifest=manifest,
    )


def previous_model_dir(out_dir: Path, stage: StageName) -> Path | None:
    """The model left by the latest stage before ``stage`` that saved one."""
    for prev in reversed(STAGES[: STAGES.index(stage)]):
        path = out_dir / prev / MODEL_DIR
        if (path / "refrag.json").is_file():
            return path
    return None


def initial_model(
    preset: Preset,
    stage: StageName,
    out_dir: Path,
    tokenizer: Tokenizer,
    *,
    init_from: Path | None = None,
) -> RefragModel:
    """``init_from``'s model, the previous stage's, or a fresh one (decoder from scratch,
    from its path, or a known base with a new LoRA adapter when the preset has one)."""
    prev = init_from if init_from is not None else previous_model_dir(out_dir, stage)
    if prev is not None:
        return RefragModel.load(prev, merge_adapter=False)
    spec = preset.decoder
    if preset.base:
        decoder, _ = load_base_decoder(known_base(preset.base))
        if preset.lora is not None:
            decoder = add_lora(decoder, preset.lora)
    elif spec.path:
        decoder = load_decoder(spec.resolved_path())
    else:
        vocab = -(-tokenizer.vocab_size // 64) * 64  # rounded up: friendlier matmul shapes
        decoder = random_decoder(
            spec.family,
            vocab_size=vocab,
            hidden_size=spec.hidden_size,
            n_layers=spec.n_layers,
            n_heads=spec.n_heads,
            n_kv_heads=spec.n_kv_heads,
            intermediate_size=spec.intermediate_size,
            max_positions=spec.max_positions,
            seed=preset.seed,
        )
    encoder = ChunkEncoder.load(preset.encoder)
    return RefragModel.create(
        tokenizer=tokenizer,
        decoder=decoder,
        encoder=encoder,
        k=preset.k,
        seed=preset.seed,
        template=preset.template,
        base=preset.base,
        projector_hidden=preset.projector_hidden,
    )


def save_model(model: RefragModel, directory: Path, *, encoder_trained: bool, notes: str) -> None:
    """Save a stage's model; a trained encoder is saved beside it and referenced."""
    if encoder_trained:
        enc_dir = (directory / "encoder").resolve()
        model.encoder.model.save_pretrained(str(enc_dir))
        model.encoder.tokenizer.save_pretrained(str(enc_dir))
        model.encoder.invalidate_fingerprint()  # the weights changed while training
        encoder_cfg = dataclasses.replace(model.config.encoder, path=str(enc_dir))
        model.config = dataclasses.replace(model.config, encoder=encoder_cfg)
    model.config = dataclasses.replace(model.config, notes=notes)
    model.save(directory)


def describe(preset: Preset) -> dict[str, Any]:
    """The preset as JSON-friendly data (recorded next to the results)."""
    return json.loads(json.dumps(asdict(preset), default=str))
