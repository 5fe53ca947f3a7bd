"""The decoder: any Hugging Face causal LM that accepts ``inputs_embeds``, loaded locally."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from refrag_agent.errors import ModelError
from refrag_agent.model.fingerprint import Fingerprint, config_fields, json_value
from refrag_agent.model.quiet import quiet_transformers
from refrag_agent.model.tensor_digest import tensor_digests


@dataclass(frozen=True)
class DecoderShape:
    """The sizes that decide prefill cost and KV-cache bytes."""

    hidden_size: int
    n_layers: int
    n_kv_heads: int
    head_dim: int
    max_positions: int
    vocab_size: int

    @classmethod
    def of(cls, model: Any) -> DecoderShape:
        cfg = model.config
        heads = int(cfg.num_attention_heads)
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        return cls(
            hidden_size=int(cfg.hidden_size),
            n_layers=int(cfg.num_hidden_layers),
            n_kv_heads=int(getattr(cfg, "num_key_value_heads", None) or heads),
            head_dim=int(head_dim),
            max_positions=int(getattr(cfg, "max_position_embeddings", 0) or 0),
            vocab_size=int(cfg.vocab_size),
        )

    def kv_bytes(self, positions: int, *, bytes_per_value: int = 2) -> int:
        """KV-cache size: 2 (K and V) x layers x kv_heads x head_dim x positions x bytes."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * positions * bytes_per_value


def check_decoder(model: Any, *, source: str = "model") -> Any:
    """Raise :class:`ModelError` unless ``model`` is a causal LM that takes ``inputs_embeds``."""
    if not hasattr(model, "get_input_embeddings") or not hasattr(model, "config"):
        raise ModelError(
            "the decoder must be a Hugging Face causal LM (PreTrainedModel)",
            source=source,
            got=type(model).__name__,
        )
    if model.get_input_embeddings() is None:
        raise ModelError("the decoder has no input embedding table", source=source)
    return model


def load_decoder(path: str | Path, *, dtype: torch.dtype | None = None) -> Any:
    """Load a causal LM from a local directory; nothing is downloaded."""
    from transformers import AutoModelForCausalLM

    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise ModelError(
            "decoder directory has no config.json",
            path=str(directory),
            fix="point to a directory written by save_pretrained()",
        )
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(
                str(directory), local_files_only=True, dtype=dtype or torch.float32
            )
    except (OSError, ValueError) as e:
        raise ModelError("could not load the decoder", path=str(directory)) from e
    model.eval()
    return check_decoder(model, source=str(directory))


# The Hugging Face config fields that change what a decoder computes (see fingerprint.py).
DECODER_FIELDS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "max_position_embeddings",
    "hidden_act",
    "rms_norm_eps",
    "layer_norm_eps",
    "tie_word_embeddings",
)


def decoder_fingerprint(model: Any) -> Fingerprint:
    """Weights and compute-relevant config of a decoder; library versions left out."""
    fields = config_fields(model.config, DECODER_FIELDS)
    # transformers 5 keeps RoPE settings in one dict; older configs had ``rope_theta``.
    rope = getattr(model.config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(model.config, "rope_theta", None))
    fields["rope_theta"] = json_value(theta)
    fields["rope_type"] = json_value(rope.get("rope_type"))
    return Fingerprint(fields, tensor_digests(model.state_dict()))
