"""The layout is the architecture: imports point one way, down the layers of ARCHITECTURE.md.

Every module of ``src/remotetables`` belongs to one layer; a module imports only modules of its
own layer or of layers below it (every import counts: module level, inside functions, and under
``TYPE_CHECKING``), and no group of modules imports itself in a circle. A new module must be
placed in :data:`LAYERS` first, which is where its place in the design is decided.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "remotetables"

# bottom to top; a name covers the module and everything below it unless a longer name claims it
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("rows",),
    ("config",),
    ("pushdown",),
    ("cache", "plan", "pagination", "http", "decoders"),
    ("auth.store",),
    ("auth",),
    ("session",),
    ("scan", "writes", "sqlguard"),
    ("vtable",),
    ("schema", "sqltext", "dbapi"),
    ("dialect", "shell", "plain", "bi"),
    ("demo",),
    ("",),  # the package itself: the public names (connect, Config, the errors), re-exported
    ("cli", "__main__"),
]
MAX_LINES = 650  # "around 600": past it a module is asking to become a package


def _modules() -> dict[str, Path]:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.append(sub if sub.removeprefix("remotetables.") in mods else node.module)
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name == "remotetables" or name.startswith("remotetables."):
                out.add(name.removeprefix("remotetables").removeprefix("."))
    return out


def _layer(module: str) -> int:
    best, best_len = -1, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            covers = module == name or (name and module.startswith(name + "."))
            if covers and len(name) > best_len:
                best, best_len = i, len(name)
    return best


MODULES = _modules()
GRAPH = {m: _imports(p, MODULES) - {m} for m, p in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if _layer(m) < 0] == []


def test_imports_point_down() -> None:
    upward = [
        f"{m} (layer {_layer(m)}) imports {dep} (layer {_layer(dep)})"
        for m, deps in sorted(GRAPH.items())
        for dep in sorted(deps)
        if _layer(dep) > _layer(m)
    ]
    assert upward == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    # a package's __init__ re-exporting its own modules is not a circle of the design
    graph = {
        m: {d for d in deps if not (m == "" or m.startswith(d + ".") or d == "")}
        for m, deps in GRAPH.items()
    }
    assert _cycles(graph) == []


def test_the_checker_sees_a_circle_and_an_upward_import() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _layer("auth.store.sqlite") < _layer("auth.service") < _layer("session")
    assert _layer("config.tables") < _layer("http.client")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module}: {lines} lines; split it into a package of named modules"


def test_no_prefixed_sibling_families() -> None:
    """``config_types.py`` beside ``config.py`` is a package waiting to be made."""
    families = []
    for folder in {p.parent for p in MODULES.values()}:
        stems = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
        for stem in stems:
            m = re.match(r"([a-z]+)_", stem)
            if m and (
                m.group(1) in stems or sum(s.startswith(m.group(1) + "_") for s in stems) > 1
            ):
                families.append(f"{folder.relative_to(SRC.parent)}/{stem}.py")
    assert sorted(families) == []
