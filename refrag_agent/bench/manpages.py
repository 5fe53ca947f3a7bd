"""Held-out prose for the log-perplexity rows: this machine's English manual pages.

No training stage reads them (the corpus is the Python standard library's sources), so a
window of a manual page is text the model has never seen. Pages are ``/usr/share/man/man*/
*.gz``, decompressed in Python and stripped of roff markup crudely: request lines are
dropped except the text of the font and heading macros, escapes are removed. Python's own
pages are skipped, as they describe what the corpus holds. One page is read per command
family (the name up to its first ``_``, ``-`` or ``.``): 16,000 near-identical ``gcloud``
pages would otherwise make most of the windows.

The pages depend on the machine, so a payload records how many files it read and a digest
of their names: two figures compare only where the digests match.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typing_extensions import assert_never

from refrag_agent.bench.evaluation import ProseSource, TextWindow, heldout_windows
from refrag_agent.errors import InvalidInput
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tokenizer import Tokenizer

MAN_ROOT = Path("/usr/share/man")
# Macros whose arguments are running text (headings, fonts, paragraph tags).
_TEXT_MACROS = frozenset({"SH", "SS", "B", "I", "BR", "BI", "IB", "IR", "RB", "RI", "SM", "SB"})
_ESCAPES = (
    (re.compile(r"\\f(\[[^]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\\((em|en|hy)"), "-"),
    (re.compile(r"\\\*?(\(..|\[[^]]*\])"), ""),  # named glyphs and strings
    (re.compile(r"\\\*."), ""),
    (re.compile(r"\\s[+-]?\d"), ""),  # size changes
    (re.compile(r"\\-"), "-"),
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r"\\ "), " "),
    (re.compile(r"\\."), ""),  # everything else: spacing, hyphenation marks
)


@dataclass(frozen=True)
class Prose:
    """Windows of held-out prose and where they came from."""

    windows: list[TextWindow]
    source: str
    files: int
    digest: str  # of the file names read, sorted

    def record(self) -> dict[str, Any]:
        """Where the windows came from, for a payload."""
        return {"source": self.source, "files": self.files, "digest": self.digest}


def roff_to_text(source: str) -> str:
    """The running text of a roff manual page, whitespace collapsed."""
    out = []
    for line in source.splitlines():
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].strip().partition(" ")
            if macro not in _TEXT_MACROS:
                continue
            line = rest.replace('"', "")
        for pattern, repl in _ESCAPES:
            line = pattern.sub(repl, line)
        out.append(line)
    return " ".join(" ".join(out).split())


def manual_pages(root: Path = MAN_ROOT) -> list[Path]:
    """This machine's English manual pages, sorted (translations live in other folders)."""
    pages = sorted(root.glob("man[1-9]/*.gz"))
    return [p for p in pages if not p.name.startswith(("python", "pydoc"))]


def manpage_windows(
    tokenizer: Tokenizer,
    *,
    n: int,
    context_tokens: int,
    target_tokens: int,
    seed: int = 0,
    root: Path = MAN_ROOT,
) -> Prose:
    """``n`` windows, one per manual page, pages and offsets drawn with ``seed``."""
    families: dict[str, list[Path]] = {}
    for page in manual_pages(root):
        families.setdefault(re.split(r"[_.-]", page.name)[0], []).append(page)
    rng = random.Random(f"manpages:{seed}")
    pages = [rng.choice(family) for family in families.values()]
    rng.shuffle(pages)
    span = context_tokens + target_tokens
    windows: list[TextWindow] = []
    used: list[str] = []
    for page in pages:
        if len(windows) == n:
            break
        try:
            text = roff_to_text(gzip.decompress(page.read_bytes()).decode("utf-8", "replace"))
        except (OSError, EOFError):
            continue
        ids = tokenizer.encode(text)
        if len(ids) < span:
            continue
        start = rng.randrange(len(ids) - span + 1)
        window = ids[start : start + span]
        windows.append(TextWindow(tuple(window[:context_tokens]), tuple(window[context_tokens:])))
        used.append(page.name)
    if len(windows) < n:
        raise InvalidInput(
            "not enough manual pages for the held-out prose",
            wanted=n,
            found=len(windows),
            root=str(root),
        )
    digest = hashlib.sha256("\n".join(sorted(used)).encode()).hexdigest()[:16]
    return Prose(windows, f"manual pages under {root}", len(used), digest)


def prose_windows(
    model: RefragModel,
    prose: ProseSource,
    *,
    n: int,
    context_tokens: int,
    target_tokens: int,
    seed: int = 0,
) -> Prose:
    """``n`` held-out windows of ``prose``: manual pages, or the corpus's held-out files."""
    if prose == "manpages":
        return manpage_windows(
            model.tokenizer,
            n=n,
            context_tokens=context_tokens,
            target_tokens=target_tokens,
            seed=seed,
        )
    elif prose == "stdlib":
        windows = heldout_windows(
            model, n=n, context_tokens=context_tokens, target_tokens=target_tokens, seed=seed
        )
        return Prose(windows, "held-out files of the tiny recipe's corpus", 0, "")
    else:
        assert_never(prose)
