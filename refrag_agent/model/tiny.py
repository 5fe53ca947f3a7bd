"""Small random-weight decoders of several families, built locally (no downloads).

Used by the tests, the latency benchmark (latency does not depend on weight values) and
the demo until a trained bundled model exists.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from refrag_agent.errors import InvalidInput

Family = Literal["llama", "qwen2", "mistral", "gpt_neox"]
FAMILIES: tuple[Family, ...] = ("llama", "qwen2", "mistral", "gpt_neox")


def random_decoder(
    family: Family = "llama",
    *,
    vocab_size: int,
    hidden_size: int = 64,
    n_layers: int = 2,
    n_heads: int = 4,
    n_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_positions: int = 4096,
    tie_embeddings: bool = True,
    seed: int = 0,
) -> Any:
    """A causal LM of ``family`` with random weights (eager attention off: SDPA)."""
    from transformers import (
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    kv = n_kv_heads or n_heads
    ffn = intermediate_size or 4 * hidden_size
    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        intermediate_size=ffn,
        max_position_embeddings=max_positions,
        tie_word_embeddings=tie_embeddings,
    )
    torch.manual_seed(seed)
    model: Any
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(num_key_value_heads=kv, **common))
    elif family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(num_key_value_heads=kv, **common))
    elif family == "mistral":
        model = MistralForCausalLM(
            MistralConfig(num_key_value_heads=kv, sliding_window=None, **common)
        )
    elif family == "gpt_neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**common))
    else:
        raise InvalidInput("unknown decoder family", family=family, known=FAMILIES)
    model.eval()
    return model
