"""Loading Hugging Face weights without printing: no progress bar, no info messages.

transformers draws a "Loading weights" bar and logs to stderr on every ``from_pretrained``.
A library must not print in its users' scripts, yet must not change their transformers
settings either: :func:`quiet_transformers` turns both off for the duration of a load and
puts the user's settings back afterwards. The CLI configures transformers itself.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
# The user's settings, saved by the outermost load (loads nest and run in threads).
_saved: tuple[bool, int] = (True, 0)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and logging inside the block, then restore them."""
    global _depth, _saved
    from transformers.utils import logging as hf_logging

    with _lock:
        if _depth == 0:
            _saved = (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity())
            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                bars, verbosity = _saved
                hf_logging.set_verbosity(verbosity)
                if bars:
                    hf_logging.enable_progress_bar()
