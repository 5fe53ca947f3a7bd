from __future__ import annotations

import subprocess
import sys

import refrag_agent.tools as tools


def test_all_is_sorted_and_importable() -> None:
    assert tools.__all__ == sorted(tools.__all__)
    for name in tools.__all__:
        assert getattr(tools, name) is not None


def test_import_does_not_load_torch() -> None:
    code = "import sys, refrag_agent.tools; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
