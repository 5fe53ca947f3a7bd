"""The training corpus, built offline from the Python standard library on this machine.

Every machine that runs refrag-agent has CPython's standard library: its sources and
docstrings are English prose and code, enough to pretrain a small decoder and to teach
the projector. Files are picked and split by hashes of their relative paths, so the same
Python version gives the same corpus everywhere; the manifest records what was read (a
sha256 per file and per split) so a trained model names its data.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from refrag_agent.errors import InvalidInput
from refrag_agent.model.tokenizer import Tokenizer

TextKind = Literal["sources", "docstrings"]
Split = Literal["train", "heldout"]
# Test suites and vendored packages are skipped: they repeat themselves or are not prose.
_SKIP_DIRS = frozenset(
    {"test", "tests", "site-packages", "idlelib", "lib2to3", "__pycache__", "encodings"}
)


@dataclass(frozen=True)
class CorpusConfig:
    """Which standard-library files to read and how to split them."""

    max_files: int = 400
    max_chars_per_file: int = 30_000
    min_chars: int = 400
    heldout_percent: int = 5  # a file is held out when its path hash mod 100 is below this
    text: TextKind = "sources"
    seed: int = 0  # picks which files when there are more than max_files

    def __post_init__(self) -> None:
        if self.max_files < 2 or self.max_chars_per_file < 1 or self.min_chars < 0:
            raise InvalidInput("corpus sizes must be positive", config=asdict(self))
        if not 0 < self.heldout_percent < 100:
            raise InvalidInput(
                "heldout_percent must be in (0, 100)", heldout_percent=self.heldout_percent
            )


@dataclass(frozen=True)
class Document:
    """One file's text; ``name`` is its path relative to the standard library root."""

    name: str
    text: str
    sha256: str


@dataclass(frozen=True)
class Corpus:
    train: tuple[Document, ...]
    heldout: tuple[Document, ...]
    manifest: dict[str, Any]

    def split(self, split: Split) -> tuple[Document, ...]:
        return self.train if split == "train" else self.heldout


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def is_heldout(name: str, percent: int) -> bool:
    """The split rule: stable across machines, runs and file order."""
    return int(_sha(f"split:{name}")[:8], 16) % 100 < percent


def docstrings(source: str) -> str:
    """The module, class and function docstrings of one source file, in order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ""
    nodes = [tree, *ast.walk(tree)]
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = [ast.get_docstring(n) for n in nodes if isinstance(n, kinds)]
    return "\n\n".join(dict.fromkeys(d for d in docs if d))  # dedup, keeping order


def build_corpus(config: CorpusConfig, root: Path | None = None) -> Corpus:
    """Read, pick and split the corpus; deterministic for a Python version and config."""
    root = root or stdlib_root()
    names = sorted(
        str(p.relative_to(root)).replace("\\", "/")
        for p in root.rglob("*.py")
        if not _SKIP_DIRS.intersection(p.relative_to(root).parts)
    )
    if not names:
        raise InvalidInput("no Python sources found to build a corpus", root=str(root))
    # Order by a seeded hash, then keep the first max_files that hold enough text.
    names.sort(key=lambda n: _sha(f"{config.seed}:{n}"))
    train: list[Document] = []
    heldout: list[Document] = []
    for name in names:
        if len(train) + len(heldout) >= config.max_files:
            break
        try:
            source = (root / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        text = source if config.text == "sources" else docstrings(source)
        text = text[: config.max_chars_per_file]
        if len(text) < config.min_chars:
            continue
        doc = Document(name=name, text=text, sha256=_sha(text))
        (heldout if is_heldout(name, config.heldout_percent) else train).append(doc)
    if not train or not heldout:
        raise InvalidInput(
            "the corpus is too small to split; raise max_files",
            train=len(train),
            heldout=len(heldout),
        )
    manifest = {
        "source": "python-stdlib",
        "python": sys.version.split()[0],
        "root": str(root),
        "config": asdict(config),
        "split_rule": f"sha256('split:' + path)[:8] mod 100 < {config.heldout_percent}",
        "train": _split_manifest(train),
        "heldout": _split_manifest(heldout),
    }
    return Corpus(tuple(train), tuple(heldout), manifest)


def _split_manifest(docs: list[Document]) -> dict[str, Any]:
    digest = hashlib.sha256()
    for d in docs:
        digest.update(f"{d.name}\0{d.sha256}\n".encode())
    return {
        "n_files": len(docs),
        "n_chars": sum(len(d.text) for d in docs),
        "sha256": digest.hexdigest(),
        "files": {d.name: d.sha256 for d in docs},
    }


def tokenize_split(docs: tuple[Document, ...], tokenizer: Tokenizer) -> np.ndarray:
    """All documents of a split as one token stream, documents separated by ``<|eos|>``."""
    eos = tokenizer.eos_id
    parts: list[int] = []
    for d in docs:
        parts.extend(tokenizer.encode(d.text))
        if eos is not None:
            parts.append(eos)
    return np.asarray(parts, dtype=np.int32)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")


def array_sha256(tokens: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(tokens).tobytes()).hexdigest()
