from __future__ import annotations

from collections.abc import Iterator

import pytest
from transformers.utils import logging as hf_logging

from refrag_agent.model.quiet import quiet_transformers


@pytest.fixture
def user_settings() -> Iterator[None]:
    """A user who wants bars and info messages; put back as found afterwards."""
    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.enable_progress_bar()
    hf_logging.set_verbosity_info()
    yield
    hf_logging.set_verbosity(verbosity)
    (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()


def test_quiet_inside_and_the_users_settings_restored(user_settings: None) -> None:
    with quiet_transformers():
        with quiet_transformers():  # loads nest (a checkpoint loads its encoder)
            assert not hf_logging.is_progress_bar_enabled()
        assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
    assert hf_logging.is_progress_bar_enabled()
    assert hf_logging.get_verbosity() == hf_logging.INFO
    with pytest.raises(RuntimeError), quiet_transformers():
        raise RuntimeError("a failed load")
    assert hf_logging.is_progress_bar_enabled()
