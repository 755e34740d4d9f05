"""The package's layers: the toolkit never imports the harness or a study, the harness never
imports a study, and no two modules import each other (directly or round a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "layerwise"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``layerwise`` module ``path`` imports, at any level of the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("layerwise")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("layerwise"):
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                candidate = f"{module}.{alias.name}"
                found.add(candidate if _exists(candidate) else module)
    return {m for m in found if _exists(m)}


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _layer(module: str) -> str:
    if module.startswith("layerwise.studies"):
        return "studies"
    if module.startswith("layerwise.harness") or module == "layerwise.__main__":
        return "harness"
    return "toolkit"


ALLOWED = {
    "toolkit": {"toolkit"},
    "harness": {"toolkit", "harness"},
    "studies": {"toolkit", "harness", "studies"},
}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_the_layers(module):
    wrong = sorted(m for m in GRAPH[module] if _layer(m) not in ALLOWED[_layer(module)])
    assert not wrong, f"{module} ({_layer(module)}) imports {wrong}"


def test_no_import_cycles():
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in GRAPH.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    # a package importing its own submodules (``__init__`` re-exports) is not a cycle
    def owns(a: str, b: str) -> bool:
        return b.startswith(a + ".") or a.startswith(b + ".")

    cycles = sorted(
        (a, b) for a in GRAPH for b in GRAPH[a] if a < b and not owns(a, b) and a in reach(b)
    )
    assert not cycles, f"modules that import each other: {cycles}"


def test_the_graph_sees_real_imports():
    # guards the parser itself: known edges must be found
    assert "layerwise.layers" in GRAPH["layerwise.groups"]
    assert "layerwise.harness.config" in GRAPH["layerwise.harness.tuning"]
    assert "layerwise.harness.comparisons" in GRAPH["layerwise.studies.discriminative_rates"]
