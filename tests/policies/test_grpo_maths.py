import math

import pytest
import torch

from refrag_agent.policies import clipped_surrogate, group_advantages, kl_estimate


def test_group_advantages_by_hand() -> None:
    adv = group_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    s = math.sqrt(1.25)  # population std of 1..4
    assert adv.tolist() == pytest.approx([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s], abs=1e-6)
    assert float(adv.mean()) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "rewards", [[0.1, 0.1, 0.1], [-3.7] * 8, [0.0, 0.0], [1e9, 1e9, 1e9], [5.0]]
)
def test_group_with_all_equal_rewards_gets_zero_advantages(rewards: list[float]) -> None:
    adv = group_advantages(torch.tensor(rewards))
    assert torch.equal(adv, torch.zeros(len(rewards)))


def test_group_advantages_per_group_in_a_batch() -> None:
    rewards = torch.tensor([[0.0, 1.0], [2.0, 2.0], [-1.0, -3.0]])
    adv = group_advantages(rewards)
    assert torch.allclose(adv, torch.tensor([[-1.0, 1.0], [0.0, 0.0], [1.0, -1.0]]))


def _by_hand() -> tuple[torch.Tensor, ...]:
    old = torch.full((2, 2), math.log(0.5))
    ratio = torch.tensor([[1.5, 1.0], [0.5, 1.0]])
    new = (old + ratio.log()).requires_grad_(True)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[True, True], [True, False]])
    return new, old, adv, mask


def test_clipped_surrogate_by_hand() -> None:
    new, old, adv, mask = _by_hand()
    loss, clip_frac = clipped_surrogate(new, old, adv, mask, clip_range=0.2)
    # Row 0: min(1.5, 1.2) = 1.2 and 1.0, mean 1.1. Row 1: min(-0.5, -0.8) = -0.8 (the padded
    # step is ignored). Loss = -(1.1 - 0.8) / 2.
    assert float(loss.detach()) == pytest.approx(-0.15, abs=1e-6)
    assert float(clip_frac) == pytest.approx(2 / 3)
    loss.backward()
    assert new.grad is not None
    # Clipped terms carry no gradient; the unclipped one gets -A * r / (T_i * G) = -1/4;
    # padding gets none.
    assert torch.allclose(new.grad, torch.tensor([[0.0, -0.25], [0.0, 0.0]]), atol=1e-6)


def test_clipped_surrogate_on_policy_is_minus_mean_advantage() -> None:
    lp = torch.log(torch.tensor([[0.2, 0.5, 0.3], [0.9, 0.1, 0.4]]))
    mask = torch.ones(2, 3, dtype=torch.bool)
    adv = torch.tensor([0.5, -2.0])
    loss, clip_frac = clipped_surrogate(lp, lp, adv, mask, clip_range=0.2)
    assert float(loss) == pytest.approx(-(0.5 - 2.0) / 2)
    assert float(clip_frac) == 0.0


def test_clipped_surrogate_with_huge_padded_log_ratio_stays_finite() -> None:
    new = torch.tensor([[0.0, 500.0]], requires_grad=True)
    old = torch.tensor([[0.0, -500.0]])
    loss, _ = clipped_surrogate(
        new, old, torch.tensor([1.0]), torch.tensor([[True, False]]), clip_range=0.2
    )
    loss.backward()
    assert torch.isfinite(loss) and new.grad is not None and torch.isfinite(new.grad).all()


def test_kl_estimate_by_hand() -> None:
    mask = torch.ones(1, 2, dtype=torch.bool)
    same = torch.tensor([[-1.0, -2.0]])
    assert float(kl_estimate(same, same, mask)) == 0.0
    new = torch.tensor([[math.log(0.25), math.log(0.25)]])
    ref = torch.tensor([[math.log(0.5), math.log(0.5)]])
    # delta = log 2: 2 - log 2 - 1
    assert float(kl_estimate(new, ref, mask)) == pytest.approx(1.0 - math.log(2.0))
    assert float(kl_estimate(ref, new, mask)) >= 0.0
