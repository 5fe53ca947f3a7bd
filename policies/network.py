"""The learned expansion policy: a small transformer that scores chunks, then picks them in turn.

REFRAG (Lin et al. 2025, section on selective compression) trains a light transformer over
the chunk embeddings whose logits define, step after step, a softmax over the chunks not yet
chosen; it picks ``T`` chunks without replacement. We keep that formulation and make it
query- and budget-aware:

- one token per chunk: its encoder embedding, its segment kind, and scalar features
  (similarity to the query, age, position, length, pinned flag, allowance fractions);
  plus one query token in front. No causal mask: every chunk sees the whole context.
- one logit per chunk, computed once per call. Step ``t`` draws from the softmax of those
  logits over the chunks the budget mask still allows (:mod:`.masking`); the number of
  steps is whatever fills the budget.
- sampling (training) uses the Gumbel-top-k trick: perturb the logits once with Gumbel noise
  and take allowed chunks in perturbed order. That draws exactly the same sequences as
  sampling step by step from the masked softmax (Kool et al. 2019), because the masks only
  shrink; inference takes the unperturbed order (greedy). Either way one sort and one pass.
- the log-probability of a chosen sequence is replayed from the step masks in one batched
  masked ``log_softmax`` (:func:`sequence_log_probs`); PPO needs it under new weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from refrag_agent.budget import Budget
from refrag_agent.errors import InvalidInput, ModelError
from refrag_agent.timeline import SegmentKind

from .base import PolicyInput, Selection
from .config import N_SCALAR_FEATURES, PolicyConfig
from .heuristics import query_similarity
from .masking import (
    Allowance,
    greedy_select,
    make_selection,
    resolve,
    step_masks,
)

CONFIG_FILE = "policy_config.json"
WEIGHTS_FILE = "policy.safetensors"
_KINDS = {kind: i for i, kind in enumerate(SegmentKind)}


class Block(nn.Module):
    """Pre-norm transformer block, bidirectional attention."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(config.d_model, config.mlp_ratio * config.d_model),
            nn.GELU(),
            nn.Linear(config.mlp_ratio * config.d_model, config.d_model),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(D, dim=-1)  # 3 x (B, L, D)
        q, k, v = (t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        # (B, H, L, head_dim)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, H, L, head_dim)
        y = y.transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        x = x + self.proj(y)
        out: torch.Tensor = x + self.mlp(self.ln_2(x))
        return out


class PolicyNetwork(nn.Module):
    """Chunk embeddings, query and features in, one expansion logit per chunk out."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.chunk_in = nn.Linear(config.embed_dim, d)
        self.query_in = nn.Linear(config.embed_dim, d)
        self.feature_in = nn.Linear(N_SCALAR_FEATURES, d)
        self.kind_emb = nn.Embedding(len(SegmentKind), d)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d)
        # No biases on the logit heads: the softmax is shift-invariant, so they never learn.
        self.head = nn.Linear(d, 1, bias=False)
        # Linear shortcut from the scalar features: a similarity- or recency-like score is
        # one weight away, and the transformer learns what to add to it.
        self.feature_head = nn.Linear(N_SCALAR_FEATURES, 1, bias=False)
        self.apply(self._init_weights)
        # Start near uniform: the first rollouts explore instead of repeating one choice.
        nn.init.normal_(self.head.weight, std=0.02 / math.sqrt(d))
        nn.init.zeros_(self.feature_head.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def forward(
        self,
        chunks: torch.Tensor,  # (B, n, embed_dim)
        query: torch.Tensor,  # (B, embed_dim)
        features: torch.Tensor,  # (B, n, N_SCALAR_FEATURES)
        kinds: torch.Tensor,  # (B, n) long
    ) -> torch.Tensor:
        x = self.chunk_in(chunks) + self.feature_in(features) + self.kind_emb(kinds)  # (B, n, d)
        x = torch.cat([self.query_in(query)[:, None, :], x], dim=1)  # (B, 1 + n, d)
        for block in self.blocks:
            x = block(x)
        logits: torch.Tensor = self.head(self.ln_f(x[:, 1:])) + self.feature_head(features)
        return logits.squeeze(-1)  # (B, n, 1) -> (B, n)


class PolicyTensors(NamedTuple):
    """One context as the network reads it (batch of one)."""

    chunks: torch.Tensor  # (1, n, embed_dim)
    query: torch.Tensor  # (1, embed_dim)
    features: torch.Tensor  # (1, n, N_SCALAR_FEATURES)
    kinds: torch.Tensor  # (1, n)


def chunk_features(
    inputs: PolicyInput, allowance: Allowance, config: PolicyConfig, device: torch.device
) -> PolicyTensors:
    """Build the network's input tensors for one context resolved against its budget."""
    if inputs.embeddings.shape[1] != config.embed_dim:
        raise InvalidInput(
            "chunk embeddings do not match the policy's embed_dim",
            expected=config.embed_dim,
            actual=inputs.embeddings.shape[1],
        )
    n = inputs.n_chunks
    chunks = inputs.chunks
    share = [min(allowance.domain_fraction(d), 1.0) for d in range(len(allowance.domains))]
    total_share = allowance.total / max(allowance.expandable_tokens, 1)
    columns = [
        torch.tensor([c.age for c in chunks], dtype=torch.float32).log1p(),
        torch.tensor([c.position for c in chunks], dtype=torch.float32) / max(n - 1, 1),
        torch.tensor(allowance.lengths, dtype=torch.float32) / config.chunk_tokens,
        torch.tensor(allowance.pinned, dtype=torch.float32),
        torch.tensor(share, dtype=torch.float32)[
            torch.tensor(allowance.domain_ids, dtype=torch.long)
        ],
        torch.full((n,), total_share, dtype=torch.float32),
    ]
    scalars = torch.stack(columns, dim=1)  # (n, F - 2)
    similarity = query_similarity(inputs.embeddings, inputs.query)  # (n,)
    # Standardised within the context too: ranking needs relative similarity, and a z-score
    # gives the answer chunk a margin of several units whatever the encoder's scale.
    std, mean = torch.std_mean(similarity, correction=0) if n else (similarity, similarity)
    z = (similarity - mean) / std.clamp_min(1e-6) if n else similarity
    features = torch.cat([similarity[:, None], z[:, None], scalars], dim=1)  # (n, F)
    kinds = torch.tensor([_KINDS[c.kind] for c in inputs.chunks], dtype=torch.long)  # (n,)
    return PolicyTensors(
        chunks=inputs.embeddings.detach().float()[None].to(device),
        query=inputs.query.detach().float()[None].to(device),
        features=features[None].to(device),
        kinds=kinds[None].to(device),
    )


def policy_logits(network: nn.Module, inputs: PolicyInput, allowance: Allowance) -> torch.Tensor:
    """``(n,)`` expansion logits of ``network`` (a :class:`PolicyNetwork`, possibly wrapped)."""
    config = _config_of(network)
    device = next(network.parameters()).device
    logits: torch.Tensor = network(*chunk_features(inputs, allowance, config, device))
    return logits[0]  # (n,)


def _unwrap(network: nn.Module) -> nn.Module:
    inner = getattr(network, "module", network)  # DDP and FSDP keep the model in .module
    assert isinstance(inner, nn.Module), type(inner)
    return inner


def _config_of(network: nn.Module) -> PolicyConfig:
    inner = _unwrap(network)
    config = getattr(inner, "config", None)
    assert isinstance(config, PolicyConfig), type(inner)
    return config


def sequence_log_probs(
    logits: torch.Tensor, chosen: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """``(T,)`` log-probability of each choice under the masked softmax of its step.

    logits ``(n,)``, chosen ``(T,)`` chunk indices, masks ``(T, n)`` from :func:`step_masks`.
    """
    assert masks.shape == (chosen.shape[0], logits.shape[0]), (masks.shape, chosen.shape)
    masked = logits[None, :].masked_fill(~masks, float("-inf"))  # (T, n)
    return masked.log_softmax(dim=-1).gather(1, chosen[:, None]).squeeze(1)  # (T,)


def gumbel_like(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise shaped like ``logits``: ``-log(E)``, ``E ~ Exp(1)``."""
    e = torch.empty(logits.shape, dtype=torch.float32).exponential_(generator=generator)
    return -e.log().to(logits.device)


@dataclass(frozen=True)
class Rollout:
    """One sampled sequence of choices and what PPO needs to re-score it."""

    chosen: tuple[int, ...]
    masks: torch.Tensor  # (T, n) bool, the mask of each step
    log_probs: torch.Tensor  # (T,) under the policy that sampled it, detached


class LearnedPolicy:
    """:class:`PolicyNetwork` as an :class:`~refrag_agent.policies.ExpansionPolicy`."""

    name = "learned"

    def __init__(self, network: PolicyNetwork) -> None:
        self.network = network

    def select(self, inputs: PolicyInput, budget: Budget, /) -> Selection:
        """Greedy selection: the allowed chunk with the highest logit, step after step."""
        allowance = resolve(inputs, budget)
        with torch.inference_mode():
            logits = policy_logits(self.network, inputs, allowance).float().cpu()
        return make_selection(self.name, logits, allowance, greedy_select(logits, allowance))

    def rollout(
        self,
        inputs: PolicyInput,
        budget: Budget | Allowance,
        *,
        generator: torch.Generator | None = None,
        greedy: bool = False,
    ) -> Rollout:
        """Sample (or, with ``greedy``, pick) one sequence of choices, with its log-probs."""
        allowance = budget if isinstance(budget, Allowance) else resolve(inputs, budget)
        with torch.no_grad():
            logits = policy_logits(self.network, inputs, allowance).float().cpu()
        return rollout_from_logits(logits, allowance, generator=generator, greedy=greedy)


def rollout_from_logits(
    logits: torch.Tensor,
    allowance: Allowance,
    *,
    generator: torch.Generator | None = None,
    greedy: bool = False,
) -> Rollout:
    """Draw one masked sequence without replacement from fixed ``(n,)`` logits."""
    keys = logits if greedy else logits + gumbel_like(logits, generator)
    chosen = greedy_select(keys, allowance)
    masks = step_masks(allowance, chosen)  # (T, n)
    idx = torch.tensor(chosen, dtype=torch.long)
    log_probs = sequence_log_probs(logits.detach(), idx, masks)
    return Rollout(chosen=tuple(chosen), masks=masks, log_probs=log_probs)


def save_policy(network: nn.Module, directory: str | Path) -> Path:
    """Write ``policy_config.json`` and ``policy.safetensors`` into ``directory``."""
    path = Path(directory)
    inner = _unwrap(network)
    config = _config_of(inner)
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
        state = {k: v.detach().contiguous().cpu() for k, v in inner.state_dict().items()}
        save_file(state, str(path / WEIGHTS_FILE))
    except (OSError, SafetensorError) as e:
        raise ModelError("cannot save the policy", path=str(path)) from e
    return path


def load_policy(directory: str | Path, *, device: str | torch.device = "cpu") -> PolicyNetwork:
    """Load a policy saved by :func:`save_policy` (config first, then weights)."""
    path = Path(directory)
    config = PolicyConfig.from_file(path / CONFIG_FILE)
    network = PolicyNetwork(config)
    try:
        state = load_file(str(path / WEIGHTS_FILE))
        network.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, SafetensorError) as e:
        raise ModelError("cannot load the policy weights", path=str(path / WEIGHTS_FILE)) from e
    return network.to(device).eval()
