"""The import direction of ARCHITECTURE.md, read from the source files with ``ast``.

core <- model, memory, tools, policies <- context <- engines <- agent, serve, training
<- bench, cli. A module imports from the layers below it and from its own package; core
modules also import each other, and the apps on top (cli, bench, console, demo, the root
package that re-exports the API) may import each other, but nothing imports the cli, and
only the cli imports bench (its ``bench`` command).
Imports under ``if TYPE_CHECKING:`` count: a type is a dependency too. There are no import
cycles, and an import inside a function is there only to keep importing the module light,
which a comment in the function says ("import time"), never to dodge a cycle.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "refrag_agent"

# Lowest first: (name, units, whether the units of the layer may import each other).
LAYERS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    (
        "core",
        tuple(
            f"{PACKAGE}.{m}"
            for m in ("budget", "errors", "lifecycle", "logs", "plan", "template", "timeline")
        ),
        True,
    ),
    (
        "components",
        tuple(f"{PACKAGE}.{m}" for m in ("memory", "model", "policies", "tools")),
        False,
    ),
    ("context", (f"{PACKAGE}.context",), False),
    ("engines", (f"{PACKAGE}.engines",), False),
    ("products", tuple(f"{PACKAGE}.{m}" for m in ("agent", "serve", "training")), False),
    (
        "apps",
        (PACKAGE, *(f"{PACKAGE}.{m}" for m in ("bench", "cli", "console", "demo", "demo_script"))),
        True,
    ),
)
# Modules that belong to a unit but live beside it.
PART_OF = {
    f"{PACKAGE}.{name}": f"{PACKAGE}.agent"
    for name in ("memory_calls", "messages", "planning", "reply")
}
# Imported only by themselves and the modules named.
NOT_IMPORTED = {f"{PACKAGE}.bench": (f"{PACKAGE}.cli",), f"{PACKAGE}.cli": ()}
LAZY_REASON = "import time"


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (a submodule when ``from package import submodule``)
    where: str  # path:line
    lazy: bool  # inside a function
    reason: bool  # a comment of that function, up to the import's line, says "import time"


def _source_folders() -> dict[str, Path]:
    """Import name -> folder, from pyproject's package-dir (memory/ is refrag_agent.memory)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {name: ROOT / d for name, d in config["tool"]["setuptools"]["package-dir"].items()}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name, folder in _source_folders().items():
        for path in sorted(folder.rglob("*.py")):
            module = ".".join((name, *path.relative_to(folder).with_suffix("").parts))
            found[module.removesuffix(".__init__")] = path
    return found


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _reasons(text: str) -> list[int]:
    """Lines of the comments that say an import is deferred for import time."""
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return [t.start[0] for t in tokens if t.type == tokenize.COMMENT and LAZY_REASON in t.string]


def _imports(modules: dict[str, Path]) -> list[Import]:
    found = []
    for module, path in modules.items():
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        reasons = _reasons(text)
        # Import node -> the line of the function it is in (the outermost one).
        lazy: dict[int, int] = {}
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    lazy.setdefault(id(node), fn.lineno)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path, node)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            else:
                continue
            for target in dict.fromkeys(targets):
                if target == PACKAGE or target.startswith(f"{PACKAGE}."):
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    start = lazy.get(id(node))
                    reason = start is not None and any(
                        start <= line <= node.lineno for line in reasons
                    )
                    found.append(Import(module, target, where, start is not None, reason))
    return found


MODULES = _modules()
IMPORTS = _imports(MODULES)


def _unit(module: str) -> tuple[int, str, bool]:
    """(layer index, unit, peers allowed) of the longest unit that holds ``module``."""
    module = PART_OF.get(module, module)
    best: tuple[int, str, bool] | None = None
    for index, (_, units, peers) in enumerate(LAYERS):
        for unit in units:
            if _within(module, unit) and (best is None or len(unit) > len(best[1])):
                best = (index, unit, peers)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _unit(module)


def test_imports_follow_the_layers() -> None:
    wrong = []
    for imp in IMPORTS:
        if imp.target not in MODULES:
            wrong.append(f"{imp.where}: {imp.target} does not exist")
            continue
        (layer, unit, peers), (to_layer, to_unit, _) = _unit(imp.source), _unit(imp.target)
        if unit == to_unit or to_layer < layer or (to_layer == layer and peers):
            continue
        wrong.append(
            f"{imp.where}: {imp.source} ({LAYERS[layer][0]}) imports {imp.target}"
            f" ({LAYERS[to_layer][0]})"
        )
    assert not wrong, "\n".join(wrong)


def _within(module: str, unit: str) -> bool:
    return module == unit or module.startswith(f"{unit}.")


def test_only_the_cli_imports_bench_and_nothing_imports_the_cli() -> None:
    wrong = [
        f"{imp.where}: {imp.source} imports {imp.target}"
        for imp in IMPORTS
        for top, allowed in NOT_IMPORTED.items()
        if _within(imp.target, top)
        and not any(_within(imp.source, unit) for unit in (top, *allowed))
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if imp.target in graph:
            graph[imp.source].add(imp.target)
    cycles = _cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_function_level_imports_say_why() -> None:
    wrong = [
        f"{imp.where}: {imp.source} imports {imp.target} in a function"
        for imp in IMPORTS
        if imp.lazy and not imp.reason
    ]
    assert not wrong, (
        f"import at the top of the module, or say in a comment of the function, above the "
        f"import, that it is deferred for {LAZY_REASON!r}:\n" + "\n".join(wrong)
    )


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)
