"""Config of the learned policy: a frozen dataclass, no torch needed.

:class:`PolicyConfig` is saved as JSON next to the policy's safetensors weights
(:func:`refrag_agent.policies.save_policy`) and read back before the weights are loaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from refrag_agent.errors import InvalidInput, ModelError

# Per-chunk scalar features the network reads (see ``network.chunk_features``): similarity
# to the query (raw and standardised over the context), log age, relative position,
# relative length, pinned flag, the domain's allowance fraction and the total one.
N_SCALAR_FEATURES = 8


@dataclass(frozen=True)
class PolicyConfig:
    """Shape of the learned expansion policy: a small transformer over chunk embeddings."""

    embed_dim: int = 384  # width of the chunk encoder (MiniLM-L6: 384), before the projector
    d_model: int = 64
    # One layer keeps the policy at about 4% of the tiny decoder's compressed prefill at 1,024
    # chunks on CPU (issue 5 bounds it at 5%); attention over n chunks is its main cost.
    n_layers: int = 1
    n_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    chunk_tokens: int = 16  # k: lengths are fed relative to it

    def __post_init__(self) -> None:
        for name in ("embed_dim", "d_model", "n_layers", "n_heads", "mlp_ratio", "chunk_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name} must be a positive integer", field=name, value=value)
        if self.d_model % self.n_heads:
            raise InvalidInput(
                "d_model must be divisible by n_heads", d_model=self.d_model, n_heads=self.n_heads
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidInput("dropout must be in [0, 1)", dropout=self.dropout)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput("unknown policy config fields", unknown=unknown)
        return cls(**data)

    @classmethod
    def from_file(cls, path: Path) -> PolicyConfig:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelError("cannot read the policy config", path=str(path)) from e
        if not isinstance(data, dict):
            raise ModelError("policy config is not a JSON object", path=str(path))
        return cls.from_dict(data)
