"""LoRA adapters on a pretrained decoder (``peft``): added for training, merged for serving.

A model built on a known base decoder (``base_decoder.py``) ships only what training
changed: the adapter's few megabytes, never the base's weights. On load the adapter is
merged into the base (``merge_and_unload``), so decoding runs a plain causal LM at the
base's speed; training keeps it unmerged and trainable.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refrag_agent.errors import ModelError
from refrag_agent.model.fingerprint import Fingerprint
from refrag_agent.model.tensor_digest import tensor_digests

ADAPTER_DIR = "adapter"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@contextmanager
def _peft_quiet() -> Iterator[None]:
    # peft asks transformers for ``is_gradient_checkpointing``, which transformers 5
    # deprecates with a FutureWarning on every adapter load: not the user's concern.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        yield


@dataclass(frozen=True)
class LoraSpec:
    """The adapter's shape: rank, scale, and the decoder's linear layers it adapts."""

    rank: int = 16
    alpha: int = 32
    targets: tuple[str, ...] = LORA_TARGETS


def is_adapted(decoder: Any) -> bool:
    """Whether ``decoder`` carries an unmerged adapter (a ``peft`` model)."""
    return hasattr(decoder, "peft_config")


def add_lora(decoder: Any, spec: LoraSpec) -> Any:
    """``decoder`` wrapped with a fresh LoRA adapter; only the adapter's weights train."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.rank, lora_alpha=spec.alpha, target_modules=list(spec.targets), lora_dropout=0.0
    )
    with _peft_quiet():
        return get_peft_model(decoder, config)


def save_adapter(decoder: Any, directory: Path) -> None:
    """Write the adapter of an adapted decoder (``adapter_model.safetensors`` + config)."""
    if not is_adapted(decoder):
        raise ModelError("this decoder has no adapter to save", got=type(decoder).__name__)
    decoder.save_pretrained(str(directory))


def load_adapter(base: Any, directory: Path, *, merge: bool) -> Any:
    """``base`` with the adapter in ``directory``: merged into its weights (serving) or
    kept apart and trainable (continuing training). Fingerprint an adapter before merging
    it (:func:`adapter_fingerprint` reads the unmerged weights)."""
    from peft import PeftModel

    if not (directory / "adapter_config.json").is_file():
        raise ModelError(
            "adapter directory has no adapter_config.json",
            path=str(directory),
            fix="restore the checkpoint's adapter/ folder",
        )
    try:
        with _peft_quiet():
            adapted = PeftModel.from_pretrained(base, str(directory), is_trainable=not merge)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError("could not load the adapter", path=str(directory)) from e
    return merged(adapted) if merge else adapted


def merged(adapted: Any) -> Any:
    """A plain decoder with the adapter folded into its weights (decodes at base speed)."""
    with _peft_quiet():
        plain = adapted.merge_and_unload()
    plain.eval()
    return plain


def adapter_fingerprint(decoder: Any) -> Fingerprint:
    """The adapter's rank, scale, targets and tensors (an adapted decoder's LoRA weights)."""
    config = decoder.peft_config["default"]
    fields = {
        "rank": int(config.r),
        "alpha": int(config.lora_alpha),
        "targets": sorted(str(t) for t in config.target_modules),
    }
    state = {k: v for k, v in decoder.state_dict().items() if "lora_" in k}
    return Fingerprint(fields, tensor_digests(state))
