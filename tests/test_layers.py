"""The package's layers: imports run one way only, no cycles, no oversized files.

Every ``import geneshot.*`` in ``src/geneshot`` counts, function-local ones included (a lazy
import hides a cycle from Python but not from the design); only imports under
``if TYPE_CHECKING:`` are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "geneshot"
MAX_LINES = 600

# Lowest first; a module may import its own layer or a lower one, never a higher one.
LAYERS: list[set[str]] = [
    {"__init__", "_constants", "errors", "cache", "_memo", "_logging", "_progress", "resources"},
    {"io", "read", "data", "image", "nuclei", "genes", "encoders"},
    {"prepare", "models"},
    {"metrics"},
    {"train"},
    {"workflow"},
    {"benchmark"},
    {"report"},
    {"predict", "cli", "__main__"},
]
# ``metrics`` is a leaf: it may use the core error type and nothing else of geneshot
LEAVES = {"metrics": {"errors"}}


def _unit(rel: Path) -> str:
    """Top-level unit of a file: ``train/_model.py`` -> ``train``, ``cache.py`` -> ``cache``."""
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _layer(unit: str) -> int:
    for i, names in enumerate(LAYERS):
        if unit in names:
            return i
    raise AssertionError(f"geneshot.{unit} has no layer: add it to LAYERS in tests/test_layers.py")


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, root: Path = SRC) -> list[tuple[str, int]]:
    """``(geneshot.x.y, line)`` of every import of geneshot in a file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(root)
    package = ["geneshot", *rel.parts[:-1]]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative: resolve against the file's package
                    base = package[: len(package) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                if mod == "geneshot":  # `from geneshot import workflow` names submodules
                    found.extend((f"geneshot.{a.name}", child.lineno) for a in child.names)
                else:
                    found.append((mod, child.lineno))
            visit(child)

    visit(tree)
    return [(m, n) for m, n in found if m == "geneshot" or m.startswith("geneshot.")]


def _edges(root: Path = SRC) -> list[tuple[str, str, str]]:
    """``(from unit, to unit, "file:line")`` between different top-level units."""
    edges = []
    for path in sorted(root.rglob("*.py")):
        src_unit = _unit(path.relative_to(root))
        for mod, line in _imports(path, root):
            parts = mod.split(".")
            dst = parts[1] if len(parts) > 1 else "__init__"
            if dst in ("__version__",):
                dst = "__init__"
            if dst != src_unit:
                edges.append((src_unit, dst, f"{path.relative_to(root)}:{line}"))
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(p.relative_to(SRC)) for p in SRC.rglob("*.py")}
    for u in units:
        _layer(u)


def test_lower_layers_never_import_higher_ones():
    bad = [
        f"{where}: geneshot.{a} (layer {_layer(a)}) imports geneshot.{b} (layer {_layer(b)})"
        for a, b, where in _edges()
        if a != "__init__" and _layer(b) > _layer(a)
    ]
    assert not bad, "\n".join(bad)


def test_metrics_is_a_leaf():
    bad = [
        f"{where}: geneshot.{a} imports geneshot.{b}"
        for a, b, where in _edges()
        if a in LEAVES and b not in LEAVES[a]
    ]
    assert not bad, "\n".join(bad)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of a directed graph (depth-first search for a back edge), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v) :] + [v]
            if v not in state and (cyc := dfs(v)):
                return cyc
        state[u] = 2
        stack.pop()
        return None

    for u in sorted(graph):
        if u not in state and (cyc := dfs(u)):
            return cyc
    return None


def test_no_import_cycles_between_packages():
    """Package graph (e.g. geneshot.train -> geneshot.metrics) has no cycle.

    Packages of one layer may use each other (io and image do), so an edge inside a layer
    is left to the module-level check below.
    """
    graph: dict[str, set[str]] = {}
    for a, b, _ in _edges():
        if a != "__init__" and _layer(a) != _layer(b):
            graph.setdefault(a, set()).add(b)
    cyc = _find_cycle(graph)
    assert cyc is None, "import cycle: " + " -> ".join(f"geneshot.{x}" for x in cyc)


def _module(path: Path, root: Path = SRC) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(("geneshot", *parts))


def test_no_import_cycles_between_modules():
    """File-level graph (function-local imports included) has no cycle."""
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for mod, _ in _imports(path):
            # `from geneshot.x import y`: y may be a submodule or a name defined in x
            target = mod if mod in modules else None
            if target and target != name and not name.startswith(target + "."):
                graph.setdefault(name, set()).add(target)
    # a package __init__ re-exports its own submodules: not a dependency cycle
    cyc = _find_cycle(graph)
    assert cyc is None, "import cycle: " + " -> ".join(cyc)


def test_a_cycle_would_be_found(tmp_path):
    """The checker itself: a planted lazy import of a higher layer is reported."""
    pkg = tmp_path / "geneshot"
    (pkg / "metrics").mkdir(parents=True)
    (pkg / "metrics" / "__init__.py").write_text("def f():\n    from geneshot.train import x\n")
    (pkg / "train").mkdir()
    (pkg / "train" / "__init__.py").write_text("from geneshot.metrics import f\n")
    (pkg / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from geneshot.cli import y\n"
    )
    edges = {(a, b) for a, b, _ in _edges(pkg)}
    assert ("metrics", "train") in edges and ("train", "metrics") in edges
    assert ("typed", "cli") not in edges


def test_no_file_is_too_long():
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines (split them): {long}"
