import itertools
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from refrag_agent.budget import Budget
from refrag_agent.errors import InvalidInput, ModelError
from refrag_agent.policies import (
    LearnedPolicy,
    PolicyConfig,
    PolicyNetwork,
    greedy_select,
    load_policy,
    resolve,
    save_policy,
    sequence_log_probs,
    step_masks,
)
from refrag_agent.policies.config import N_SCALAR_FEATURES
from refrag_agent.policies.network import gumbel_like
from refrag_agent.policies.toy import random_input

CONFIG = PolicyConfig(embed_dim=8, d_model=16, n_layers=2, n_heads=2)


def test_forward_shapes_and_dtype() -> None:
    net = PolicyNetwork(CONFIG)
    B, n = 3, 11
    logits = net(
        torch.randn(B, n, 8),
        torch.randn(B, 8),
        torch.randn(B, n, N_SCALAR_FEATURES),
        torch.randint(0, 6, (B, n)),
    )
    assert logits.shape == (B, n) and logits.dtype == torch.float32


def test_chunks_see_each_other_and_the_query() -> None:
    torch.manual_seed(0)
    net = PolicyNetwork(CONFIG).eval()
    inputs = random_input(6, 8)
    policy = LearnedPolicy(net)
    before = policy.select(inputs, Budget(p=0.5)).scores
    changed = inputs.embeddings.clone()
    changed[5] += 1.0
    from refrag_agent.policies import PolicyInput

    after = policy.select(PolicyInput(changed, inputs.query, inputs.chunks), Budget(p=0.5)).scores
    assert not torch.allclose(before[0], after[0])  # chunk 0's logit depends on chunk 5


def test_greedy_select_is_deterministic_and_uses_top_logits() -> None:
    torch.manual_seed(0)
    policy = LearnedPolicy(PolicyNetwork(CONFIG))
    inputs = random_input(30, 8)
    first = policy.select(inputs, Budget(tokens=80))
    assert first.indices == policy.select(inputs, Budget(tokens=80)).indices
    assert list(first.indices) == first.scores.argsort(descending=True)[:5].tolist()


def _sequence_probs(logits: torch.Tensor, n_tokens: list[int], budget: Budget) -> dict:
    inputs = random_input(len(n_tokens), 8, lengths=n_tokens)
    allowance = resolve(inputs, budget)
    probs = {}
    for T in range(len(n_tokens) + 1):
        for seq in itertools.permutations(range(len(n_tokens)), T):
            masks = step_masks(allowance, seq, include_final=True)
            if not all(masks[t, i] for t, i in enumerate(seq)) or masks[-1].any():
                continue  # not a complete, feasible selection
            lp = sequence_log_probs(logits, torch.tensor(seq, dtype=torch.long), masks[:-1])
            probs[seq] = math.exp(float(lp.sum()))
    return probs


def test_sequence_probabilities_sum_to_one() -> None:
    logits = torch.tensor([0.5, -1.0, 2.0, 0.0])
    probs = _sequence_probs(logits, [16, 8, 16, 4], Budget(tokens=24))
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_gumbel_sampling_matches_sequential_masked_softmax() -> None:
    # Lengths make the mask after the first choice depend on that choice.
    lengths, budget = [16, 8, 16, 4], Budget(tokens=24)
    logits = torch.tensor([0.5, -1.0, 2.0, 0.0])
    exact = _sequence_probs(logits, lengths, budget)
    allowance = resolve(random_input(4, 8, lengths=lengths), budget)
    g = torch.Generator().manual_seed(0)
    draws = 4000
    counts: dict[tuple[int, ...], int] = {}
    for _ in range(draws):
        # What rollout_from_logits does to sample: perturb once, then one masked pass.
        seq = tuple(greedy_select(logits + gumbel_like(logits, g), allowance))
        counts[seq] = counts.get(seq, 0) + 1
    assert set(counts) <= set(exact)
    for seq, p in exact.items():
        assert counts.get(seq, 0) / draws == pytest.approx(p, abs=0.03), seq


def test_rollout_log_probs_match_replay() -> None:
    torch.manual_seed(0)
    policy = LearnedPolicy(PolicyNetwork(CONFIG))
    inputs = random_input(12, 8, lengths=[16, 3, 16, 9] * 3)
    rollout = policy.rollout(inputs, Budget(p=0.5), generator=torch.Generator().manual_seed(1))
    allowance = resolve(inputs, Budget(p=0.5))
    assert torch.equal(rollout.masks, step_masks(allowance, rollout.chosen))
    greedy = policy.rollout(inputs, Budget(p=0.5), greedy=True)
    assert greedy.chosen == policy.select(inputs, Budget(p=0.5)).chosen


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = PolicyNetwork(CONFIG)
    save_policy(net, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "policy_config.json").exists()
    assert (tmp_path / "ckpt" / "policy.safetensors").exists()
    loaded = load_policy(tmp_path / "ckpt")
    assert loaded.config == CONFIG
    for (name, a), (_, b) in zip(
        net.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    inputs = random_input(9, 8)
    assert (
        LearnedPolicy(net).select(inputs, Budget(p=0.3)).indices
        == LearnedPolicy(loaded).select(inputs, Budget(p=0.3)).indices
    )


def test_load_errors_are_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        load_policy(tmp_path / "missing")
    save_policy(PolicyNetwork(CONFIG), tmp_path / "a")
    (tmp_path / "a" / "policy.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError):
        load_policy(tmp_path / "a")
    bigger = PolicyConfig(embed_dim=8, d_model=32, n_layers=2, n_heads=2)
    save_policy(PolicyNetwork(bigger), tmp_path / "b")
    (tmp_path / "b" / "policy_config.json").write_text(CONFIG.to_json())
    with pytest.raises(ModelError):
        load_policy(tmp_path / "b")


def test_config_checks_and_embed_dim_mismatch() -> None:
    with pytest.raises(InvalidInput):
        PolicyConfig(d_model=30, n_heads=4)
    with pytest.raises(InvalidInput):
        PolicyConfig(n_layers=0)
    with pytest.raises(InvalidInput):
        PolicyConfig.from_dict({"d_model": 16, "width": 3})
    policy = LearnedPolicy(PolicyNetwork(CONFIG))
    with pytest.raises(InvalidInput):
        policy.select(random_input(4, 9), Budget(p=0.5))


def test_config_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from refrag_agent.policies import PolicyConfig\n"
        "c = PolicyConfig.from_dict({'d_model': 32})\n"
        "assert PolicyConfig.from_dict(__import__('json').loads(c.to_json())) == c\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
