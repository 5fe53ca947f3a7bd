import pytest
from hypothesis import given
from hypothesis import strategies as st

from refrag_agent.budget import Budget, effective_compression, expanded_fraction, fraction_of
from refrag_agent.errors import BudgetError, InvalidInput


def test_default_expands_nothing() -> None:
    budget = Budget()
    assert budget.total_allowance(1000) == 0
    assert budget.domain_allowance("user", 100) is None


def test_tokens_and_p_totals() -> None:
    assert Budget(tokens=40).total_allowance(1000) == 40
    assert Budget(tokens=40).total_allowance(30) == 30  # never more than there is
    assert Budget(p=0.25).total_allowance(1000) == 250
    assert Budget(p=0.29).total_allowance(100) == 29  # no round-off loss
    assert Budget(p=1.0).total_allowance(77) == 77


def test_per_domain_int_is_tokens_float_is_fraction() -> None:
    budget = Budget(p=0.5, per_domain={"tool_output": 32, "document": 0.25, "user": 1.0})
    assert budget.domain_allowance("tool_output", 1000) == 32
    assert budget.domain_allowance("tool_output", 10) == 10
    assert budget.domain_allowance("document", 100) == 25
    assert budget.domain_allowance("user", 100) == 100
    assert isinstance(budget.per_domain["user"], float)
    assert isinstance(budget.per_domain["tool_output"], int)


def test_pins() -> None:
    budget = Budget(pinned=["seg-a", "seg-b"])
    assert budget.pinned == frozenset({"seg-a", "seg-b"})
    assert budget.is_pinned("seg-a") and not budget.is_pinned("seg-c")


def test_frozen() -> None:
    budget = Budget(tokens=3)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        budget.tokens = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tokens": 10, "p": 0.1}, "tokens"),
        ({"tokens": -1}, "field"),
        ({"tokens": 2.5}, "field"),
        ({"tokens": True}, "field"),
        ({"tokens": "8"}, "field"),
        ({"p": 1.5}, "field"),
        ({"p": -0.1}, "field"),
        ({"p": float("nan")}, "field"),
        ({"per_domain": {"doc": 1.5}}, "field"),
        ({"per_domain": {"doc": -3}}, "field"),
        ({"per_domain": {"doc": False}}, "field"),
        ({"per_domain": {"": 3}}, "domain"),
        ({"per_domain": [("doc", 3)]}, "value"),
        ({"pinned": "seg-a"}, "value"),
        ({"pinned": ["seg-a", ""]}, "id"),
        ({"p": 0.1, "budget": 3}, "unknown"),
    ],
)
def test_invalid_budgets_raise_budget_error_with_context(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(BudgetError) as info:
        Budget(**kwargs)
    assert isinstance(info.value, InvalidInput)
    assert field in info.value.context


def test_effective_compression() -> None:
    assert effective_compression(16, 0.0) == 16.0
    assert effective_compression(16, 1.0) == 1.0
    assert effective_compression(16, 0.1) == pytest.approx(16 / 2.5)
    with pytest.raises(BudgetError):
        effective_compression(0, 0.1)
    with pytest.raises(BudgetError):
        effective_compression(16, 2.0)


@given(k=st.integers(1, 64), p=st.floats(0.0, 1.0))
def test_effective_compression_bounds(k: int, p: float) -> None:
    rate = effective_compression(k, p)
    assert 1.0 - 1e-9 <= rate <= k + 1e-9


@given(p=st.floats(0.0, 1.0), n=st.integers(0, 10_000))
def test_fraction_allowance_never_exceeds(p: float, n: int) -> None:
    allowed = fraction_of(p, n)
    assert 0 <= allowed <= n
    assert allowed >= int(p * n) - 1


def test_expanded_fraction() -> None:
    assert expanded_fraction(0, 0) == 0.0
    assert expanded_fraction(16, 64) == 0.25
    with pytest.raises(BudgetError):
        expanded_fraction(65, 64)
