"""pyproject.toml names every package the folders hold, for the install and for mypy.

memory/, policies/ and tools/ install as refrag_agent.memory, .policies and .tools
(setuptools package-dir). The install lists its packages one by one, and mypy reads the
three through the links in typecheck/refrag_agent: a new package or a new mapped folder
has to reach both, or the wheel ships without it and mypy never reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONFIG: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
FOLDERS: dict[str, str] = CONFIG["tool"]["setuptools"]["package-dir"]
LINKS = ROOT / "typecheck"


def _packages_on_disk() -> set[str]:
    found = set()
    for name, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    return found


def test_the_install_lists_every_package() -> None:
    assert sorted(CONFIG["tool"]["setuptools"]["packages"]) == sorted(_packages_on_disk())


def test_mypy_checks_every_mapped_folder_under_its_import_name() -> None:
    assert sorted(CONFIG["tool"]["mypy"]["packages"]) == sorted(FOLDERS)
    root = LINKS / "refrag_agent" / "__init__.py"
    assert root.is_symlink() and root.resolve() == (ROOT / "refrag_agent" / "__init__.py")
    for name, folder in FOLDERS.items():
        if name == "refrag_agent":
            continue
        link = LINKS.joinpath(*name.split("."))
        assert link.is_symlink(), f"typecheck/{'/'.join(name.split('.'))} -> {folder}"
        assert link.resolve() == (ROOT / folder).resolve()
