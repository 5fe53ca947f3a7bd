"""Every policy, the learned one included, honours every cap of every budget."""

from collections.abc import Callable

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refrag_agent.budget import Budget
from refrag_agent.policies import (
    AllPolicy,
    ChunkFeatures,
    ExpansionPolicy,
    LearnedPolicy,
    NonePolicy,
    PerplexityPolicy,
    PolicyConfig,
    PolicyInput,
    PolicyNetwork,
    RandomPolicy,
    RecencyPolicy,
    Selection,
    SimilarityPolicy,
    allowed_mask,
    greedy_select,
    resolve,
    step_masks,
)
from refrag_agent.timeline import SegmentKind

DIM = 8
DOMAINS = ("user", "document", "tool_output")
KINDS = (SegmentKind.USER, SegmentKind.DOCUMENT, SegmentKind.TOOL_OUTPUT)

torch.manual_seed(0)
NETWORK = PolicyNetwork(PolicyConfig(embed_dim=DIM, d_model=16, n_layers=1, n_heads=2))


def _perplexity(inputs: PolicyInput) -> torch.Tensor:
    return inputs.embeddings.sum(dim=1).exp()


POLICIES: dict[str, Callable[[], ExpansionPolicy]] = {
    "none": NonePolicy,
    "all": AllPolicy,
    "random": lambda: RandomPolicy(seed=3),
    "recency": RecencyPolicy,
    "similarity": SimilarityPolicy,
    "perplexity-desc": lambda: PerplexityPolicy(_perplexity, order="descending"),
    "perplexity-asc": lambda: PerplexityPolicy(_perplexity, order="ascending"),
    "learned": lambda: LearnedPolicy(NETWORK),
}


@st.composite
def contexts(draw: st.DrawFn) -> tuple[PolicyInput, Budget]:
    n = draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    chunks = []
    for i in range(n):
        d = draw(st.integers(0, len(DOMAINS) - 1))
        chunks.append(
            ChunkFeatures(
                kind=KINDS[d],
                domain=DOMAINS[d],
                n_tokens=draw(st.integers(1, 16)),
                position=i,
                age=float(draw(st.integers(0, 5))),
                pinned=draw(st.booleans()) and draw(st.booleans()),
                segment_id=f"seg-{draw(st.integers(0, 5))}",
            )
        )
    inputs = PolicyInput(torch.randn(n, DIM, generator=g), torch.randn(DIM, generator=g), chunks)
    total = draw(st.sampled_from(["none", "tokens", "p"]))
    caps = draw(
        st.dictionaries(
            st.sampled_from(DOMAINS),
            st.one_of(st.integers(0, 80), st.floats(0.0, 1.0)),
            max_size=3,
        )
    )
    pinned = draw(st.lists(st.sampled_from([f"seg-{i}" for i in range(6)]), max_size=2))
    budget = Budget(
        tokens=draw(st.integers(0, 300)) if total == "tokens" else None,
        p=draw(st.floats(0.0, 1.0)) if total == "p" else None,
        per_domain=caps,
        pinned=pinned,
    )
    return inputs, budget


def assert_honours(
    inputs: PolicyInput, budget: Budget, selection: Selection, *, fills: bool = True
) -> None:
    """Caps checked from the budget's own arithmetic, not through the policy's mask."""
    n = inputs.n_chunks
    assert len(set(selection.indices)) == len(selection.indices)
    assert all(0 <= i < n for i in selection.indices)
    assert selection.scores.shape == (n,)
    pinned = {i for i, c in enumerate(inputs.chunks) if c.pinned or budget.is_pinned(c.segment_id)}
    assert set(selection.indices[: selection.n_pinned]) == pinned
    chosen = selection.chosen
    assert not pinned & set(chosen)

    free = [i for i in range(n) if i not in pinned]
    total = budget.total_allowance(sum(inputs.chunks[i].n_tokens for i in free))
    spent = sum(inputs.chunks[i].n_tokens for i in chosen)
    assert spent <= total
    remaining_domain: dict[str, int | None] = {}
    for domain in DOMAINS:
        mine = [i for i in free if inputs.chunks[i].domain == domain]
        cap = budget.domain_allowance(domain, sum(inputs.chunks[i].n_tokens for i in mine))
        used = sum(inputs.chunks[i].n_tokens for i in chosen if inputs.chunks[i].domain == domain)
        if cap is not None:
            assert used <= cap, (domain, used, cap)
            remaining_domain[domain] = cap - used
        else:
            remaining_domain[domain] = None

    if fills:  # the budget is spent as far as chunk lengths allow: nothing left would fit
        for i in free:
            if i in chosen:
                continue
            c = inputs.chunks[i]
            room = remaining_domain[c.domain]
            assert c.n_tokens > total - spent or (room is not None and c.n_tokens > room)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=contexts(), name=st.sampled_from(sorted(POLICIES)))
def test_every_policy_honours_every_cap(case: tuple[PolicyInput, Budget], name: str) -> None:
    inputs, budget = case
    selection = POLICIES[name]().select(inputs, budget)
    assert selection.policy == name
    assert_honours(inputs, budget, selection, fills=name != "none")


@settings(max_examples=60, deadline=None)
@given(case=contexts(), seed=st.integers(0, 1000))
def test_learned_sampling_honours_every_cap(case: tuple[PolicyInput, Budget], seed: int) -> None:
    inputs, budget = case
    rollout = LearnedPolicy(NETWORK).rollout(
        inputs, budget, generator=torch.Generator().manual_seed(seed)
    )
    allowance = resolve(inputs, budget)
    pins = tuple(i for i, pin in enumerate(allowance.pinned) if pin)
    selection = Selection(
        "learned", (*pins, *rollout.chosen), torch.zeros(inputs.n_chunks), len(pins)
    )
    assert_honours(inputs, budget, selection)
    # Each choice came from the mask of its step, and the log-probs are proper.
    for t, i in enumerate(rollout.chosen):
        assert rollout.masks[t, i]
    assert rollout.log_probs.shape == (len(rollout.chosen),)
    assert bool((rollout.log_probs <= 1e-6).all())
    assert not bool(allowed_mask(allowance, rollout.chosen).any())


@settings(max_examples=80, deadline=None)
@given(case=contexts(), seed=st.integers(0, 1000))
def test_one_pass_equals_masked_argmax_step_by_step(
    case: tuple[PolicyInput, Budget], seed: int
) -> None:
    inputs, budget = case
    allowance = resolve(inputs, budget)
    scores = torch.randn(inputs.n_chunks, generator=torch.Generator().manual_seed(seed))
    naive: list[int] = []
    while True:
        mask = allowed_mask(allowance, naive)
        if not bool(mask.any()):
            break
        masked = scores.masked_fill(~mask, float("-inf"))
        naive.append(int(masked.argmax()))
    assert greedy_select(scores, allowance) == naive
    masks = step_masks(allowance, naive)
    assert masks.shape == (len(naive), inputs.n_chunks)
    for t in range(len(naive)):
        assert torch.equal(masks[t], allowed_mask(allowance, naive[:t]))


def test_mask_drops_a_domain_once_its_cap_is_spent() -> None:
    chunks = [
        ChunkFeatures(kind=SegmentKind.DOCUMENT, domain="document", n_tokens=16, position=0),
        ChunkFeatures(kind=SegmentKind.DOCUMENT, domain="document", n_tokens=16, position=1),
        ChunkFeatures(kind=SegmentKind.USER, domain="user", n_tokens=8, position=2),
    ]
    inputs = PolicyInput(torch.randn(3, DIM), torch.randn(DIM), chunks)
    allowance = resolve(inputs, Budget(tokens=100, per_domain={"document": 16}))
    assert allowed_mask(allowance, []).tolist() == [True, True, True]
    assert allowed_mask(allowance, [0]).tolist() == [False, False, True]
    assert allowed_mask(allowance, [0, 2]).tolist() == [False, False, False]
