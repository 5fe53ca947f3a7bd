import refrag_agent.policies as policies


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert policies.__all__ == sorted(policies.__all__)
    for name in policies.__all__:
        assert getattr(policies, name) is not None, name
    assert set(policies.__all__) <= set(dir(policies))


def test_docstring_kept() -> None:
    assert policies.__doc__ and "Expansion policies" in policies.__doc__
