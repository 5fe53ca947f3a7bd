import pytest
import torch

from refrag_agent.budget import Budget
from refrag_agent.errors import InvalidInput
from refrag_agent.policies import (
    AllPolicy,
    ChunkFeatures,
    ExpansionPolicy,
    NonePolicy,
    PerplexityPolicy,
    PolicyInput,
    RandomPolicy,
    RecencyPolicy,
    SimilarityPolicy,
    make_policy,
)
from refrag_agent.policies.registry import POLICY_NAMES
from refrag_agent.policies.toy import random_input
from refrag_agent.timeline import SegmentKind

ONE_CHUNK = Budget(tokens=16)


def test_none_expands_only_pins() -> None:
    inputs = random_input(6, 8, pinned=[False, True, False, False, False, False])
    selection = NonePolicy().select(inputs, Budget(p=1.0))
    assert selection.indices == (1,)
    assert selection.n_pinned == 1 and selection.chosen == ()


def test_all_expands_everything_at_p_one_and_in_order_otherwise() -> None:
    inputs = random_input(6, 8)
    assert AllPolicy().select(inputs, Budget(p=1.0)).indices == (0, 1, 2, 3, 4, 5)
    assert AllPolicy().select(inputs, Budget(tokens=32)).indices == (0, 1)
    assert AllPolicy().select(inputs, Budget()).indices == ()


def test_random_is_seeded() -> None:
    inputs = random_input(20, 8)
    first = RandomPolicy(seed=7).select(inputs, Budget(p=0.25)).indices
    again = RandomPolicy(seed=7).select(inputs, Budget(p=0.25)).indices
    other = RandomPolicy(seed=8).select(inputs, Budget(p=0.25)).indices
    assert first == again and len(first) == 5
    assert first != other


def test_recency_prefers_newest_then_latest_position() -> None:
    base = random_input(4, 8)
    ages = [3.0, 0.0, 0.0, 1.0]
    chunks = tuple(
        ChunkFeatures(kind=c.kind, domain=c.domain, n_tokens=16, position=c.position, age=a)
        for c, a in zip(base.chunks, ages, strict=True)
    )
    inputs = PolicyInput(base.embeddings, base.query, chunks)
    assert RecencyPolicy().select(inputs, Budget(tokens=48)).indices == (2, 1, 3)


def test_similarity_picks_the_chunk_that_matches_the_query() -> None:
    inputs = random_input(10, 32, seed=1)
    inputs = PolicyInput(inputs.embeddings, inputs.embeddings[6] * 3.0, inputs.chunks)
    selection = SimilarityPolicy().select(inputs, ONE_CHUNK)
    assert selection.indices == (6,)
    assert int(selection.scores.argmax()) == 6


def test_perplexity_orders_and_rejects_bad_scores() -> None:
    inputs = random_input(5, 8)
    ppl = torch.tensor([3.0, 9.0, 1.0, 5.0, 2.0])
    calls: list[int] = []

    def scorer(x: PolicyInput) -> torch.Tensor:
        calls.append(x.n_chunks)
        return ppl

    budget = Budget(tokens=32)
    assert PerplexityPolicy(scorer, order="descending").select(inputs, budget).indices == (1, 3)
    assert PerplexityPolicy(scorer, order="ascending").select(inputs, budget).indices == (2, 4)
    assert calls == [5, 5]  # one scoring pass per call
    with pytest.raises(InvalidInput):
        PerplexityPolicy(lambda x: torch.ones(4), order="ascending").select(inputs, budget)
    with pytest.raises(InvalidInput):
        nan = torch.tensor([1.0, float("nan"), 1.0, 1.0, 1.0])
        PerplexityPolicy(lambda x: nan, order="ascending").select(inputs, budget)


def test_shorter_chunk_fills_what_a_full_one_cannot() -> None:
    inputs = random_input(3, 8, lengths=[16, 16, 5])
    # 20 tokens: chunk 0 (16) fits, chunk 1 does not, the 5-token tail of chunk 2 does not
    # either (4 left); at 21 it does.
    assert AllPolicy().select(inputs, Budget(tokens=20)).indices == (0,)
    assert AllPolicy().select(inputs, Budget(tokens=21)).indices == (0, 2)


def test_budget_pins_segments_by_id() -> None:
    inputs = random_input(4, 8)
    selection = NonePolicy().select(inputs, Budget(pinned=["seg-2"]))
    assert selection.indices == (2,)


def test_registry_builds_every_policy() -> None:
    scorer = lambda x: torch.ones(x.n_chunks)  # noqa: E731
    from refrag_agent.policies import PolicyConfig, PolicyNetwork

    network = PolicyNetwork(PolicyConfig(embed_dim=8, d_model=16, n_heads=2, n_layers=1))
    inputs = random_input(4, 8)
    for name in POLICY_NAMES:
        policy = make_policy(name, scorer=scorer, network=network)
        assert isinstance(policy, ExpansionPolicy)
        assert policy.name == name
        assert policy.select(inputs, Budget(p=0.5)).policy == name
    with pytest.raises(InvalidInput):
        make_policy("perplexity-desc")
    with pytest.raises(InvalidInput):
        make_policy("learned")
    with pytest.raises(InvalidInput):
        make_policy("best")  # type: ignore[arg-type]


def test_policy_input_is_checked() -> None:
    chunk = ChunkFeatures(kind=SegmentKind.USER, domain="user", n_tokens=4, position=0)
    with pytest.raises(InvalidInput):
        PolicyInput(torch.randn(2, 8), torch.randn(8), (chunk,))
    with pytest.raises(InvalidInput):
        PolicyInput(torch.randn(1, 8), torch.randn(7), (chunk,))
    with pytest.raises(InvalidInput):
        PolicyInput(torch.randn(8), torch.randn(8), (chunk,))
    with pytest.raises(InvalidInput):
        ChunkFeatures(kind=SegmentKind.USER, domain="user", n_tokens=0, position=0)
    with pytest.raises(InvalidInput):
        ChunkFeatures(kind=SegmentKind.USER, domain="", n_tokens=1, position=0)
    with pytest.raises(InvalidInput):
        ChunkFeatures(kind=SegmentKind.USER, domain="user", n_tokens=1, position=0, age=-1.0)
