"""One checkpoint directory: config JSON, projector weights, decoder, tokenizer, fingerprints.

::

    refrag.json              RefragConfig: k, encoder reference and fingerprint, projector
                             shape and sha256, where the decoder and tokenizer are
    projector.safetensors    the projector's weights
    decoder/                 the decoder (save_pretrained), unless refrag.json points elsewhere
    tokenizer/               the decoder's tokenizer
    policy/                  the learned expansion policy, when one was trained

Loading checks every piece against ``refrag.json`` and names the file and the fix when
something does not match.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from refrag_agent.errors import ModelError
from refrag_agent.model.config import CONFIG_FILE, EncoderConfig, RefragConfig
from refrag_agent.model.decoder import DecoderShape, load_decoder
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.projector import Projector
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tokenizer import load_tokenizer

PROJECTOR_FILE = "projector.safetensors"
POLICY_DIR = "policy"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _resolve(directory: Path, reference: str) -> Path:
    ref = Path(reference)
    return ref if ref.is_absolute() else directory / ref


def save_checkpoint(
    model: RefragModel, directory: str | Path, *, save_decoder: bool = True
) -> Path:
    """Write ``model`` to ``directory``.

    With ``save_decoder=False`` the decoder is not copied and ``refrag.json`` keeps the
    model's current decoder reference, which must then be an absolute path.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.projector.state_dict().items()}
    save_file(state, str(out / PROJECTOR_FILE))
    decoder_ref = model.config.decoder
    if save_decoder:
        model.decoder.save_pretrained(str(out / "decoder"))
        decoder_ref = "decoder"
    elif not Path(decoder_ref).is_absolute():
        raise ModelError(
            "save_decoder=False needs an absolute decoder reference",
            decoder=decoder_ref,
            fix="set config.decoder to the decoder's directory, or save the decoder",
        )
    model.tokenizer.save(out / "tokenizer")
    if model.policy is not None:
        from refrag_agent.policies import save_policy

        save_policy(model.policy, out / POLICY_DIR)
    config = dataclasses.replace(
        model.config,
        decoder=decoder_ref,
        tokenizer="tokenizer",
        encoder_fingerprint=model.encoder.fingerprint,
        projector_sha256=_sha256(out / PROJECTOR_FILE),
    )
    (out / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    model.config = config
    return out


def load_checkpoint(
    directory: str | Path,
    *,
    encoder: ChunkEncoder | None = None,
    decoder: Any = None,
    dtype: torch.dtype | None = None,
    check_encoder: bool = True,
) -> RefragModel:
    """Load a checkpoint directory written by :func:`save_checkpoint`.

    ``encoder`` or ``decoder`` may be passed already loaded (shared between models);
    ``check_encoder=False`` skips the fingerprint check (for instance, to fine-tune).
    """
    root = Path(directory)
    config = RefragConfig.read(root)
    projector_path = root / PROJECTOR_FILE
    if not projector_path.is_file():
        raise ModelError(
            f"{PROJECTOR_FILE} is missing", path=str(projector_path), fix="re-save the checkpoint"
        )
    if config.projector_sha256 and _sha256(projector_path) != config.projector_sha256:
        raise ModelError(
            f"{PROJECTOR_FILE} does not match the sha256 recorded in {CONFIG_FILE}",
            path=str(projector_path),
            fix="the file was changed or truncated: restore it or re-save the checkpoint",
        )

    encoder = encoder or ChunkEncoder.load(EncoderConfig(**dataclasses.asdict(config.encoder)))
    if (
        check_encoder
        and config.encoder_fingerprint
        and encoder.fingerprint != config.encoder_fingerprint
    ):
        raise ModelError(
            "the encoder differs from the one this checkpoint was trained with",
            path=str(root / CONFIG_FILE),
            expected=config.encoder_fingerprint,
            found=encoder.fingerprint,
            fix="load the encoder recorded in refrag.json, or retrain the projector "
            "(reconstruction stage) for this encoder",
        )
    if decoder is None:
        decoder = load_decoder(_resolve(root, config.decoder), dtype=dtype)
    tokenizer = load_tokenizer(_resolve(root, config.tokenizer))

    shape = DecoderShape.of(decoder)
    expected = (config.projector.in_dim, config.projector.out_dim)
    actual = (encoder.dim, shape.hidden_size)
    if expected != actual:
        raise ModelError(
            "projector dimensions do not match the encoder and decoder",
            path=str(root / CONFIG_FILE),
            projector_in_out=expected,
            encoder_decoder=actual,
            fix="use the encoder and decoder this checkpoint was trained with",
        )
    projector = Projector(config.projector)
    try:
        state = load_file(str(projector_path))
        projector.load_state_dict(state)
    except (SafetensorError, RuntimeError) as e:
        raise ModelError(
            f"{PROJECTOR_FILE} does not fit the projector in {CONFIG_FILE}",
            path=str(projector_path),
            fix="the weights and the config come from different checkpoints",
        ) from e
    projector.eval()
    policy = None
    if (root / POLICY_DIR).is_dir():
        from refrag_agent.policies import load_policy

        policy = load_policy(root / POLICY_DIR).eval()
    return RefragModel(
        config=config,
        tokenizer=tokenizer,
        decoder=decoder,
        projector=projector,
        encoder=encoder,
        policy=policy,
    )
