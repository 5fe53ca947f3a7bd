from __future__ import annotations

import subprocess
import sys

import refrag_agent
from refrag_agent import errors


def test_all_is_sorted_and_importable() -> None:
    assert refrag_agent.__all__ == sorted(refrag_agent.__all__)
    for name in refrag_agent.__all__:
        assert getattr(refrag_agent, name) is not None


def test_import_does_not_load_torch() -> None:
    code = "import sys, refrag_agent; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_error_tree() -> None:
    assert issubclass(errors.BudgetError, errors.InvalidInput)
    assert issubclass(errors.ScopeError, errors.InvalidInput)
    for failure in (errors.StoreError, errors.ModelError, errors.DecoderUnavailable):
        assert issubclass(failure, errors.RefragFailure)
        assert not issubclass(failure, errors.InvalidInput)
    err = errors.ModelError("bad file", path="/x", fix="re-save")
    assert isinstance(err, errors.RefragError)
    assert str(err) == "bad file (path='/x', fix='re-save')"
