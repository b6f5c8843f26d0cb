"""The library's import graph: every import statement of ``reenact_core`` (module level or inside functions)."""
from __future__ import annotations

import ast
from pathlib import Path

import reenact_core

PACKAGE = Path(reenact_core.__file__).resolve().parent
# reenact_core.models holds pure networks: torch and the errors only, never the layers built on them.
MODELS_MAY_NOT_IMPORT = ("reenact_core.weights", "reenact_core.params", "reenact_core.engine", "reenact_core.faces")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The reenact_core modules ``name`` imports anywhere in its file (``from X import Y`` counts Y when Y is a
    module, else X)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:   # `import a.b.c` of a non-module attribute: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    return edges


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return result


def test_the_walk_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "reenact_core.weights.kinds" in graph["reenact_core.weights"]          # from .kinds import ...
    assert "reenact_core.weights" in graph["reenact_core.cli"]                      # inside a function
    assert "reenact_core.models.stylegan2" in graph["reenact_core.models.e4e"]      # absolute


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_models_depend_only_on_torch_and_errors():
    graph = import_graph()
    bad = {(name, target) for name, targets in graph.items() if name.startswith("reenact_core.models")
           for target in targets if target.startswith(MODELS_MAY_NOT_IMPORT)}
    assert not bad, f"reenact_core.models imports upward: {sorted(bad)}"
    allowed = {"reenact_core.errors"} | {n for n in graph if n.startswith("reenact_core.models")}
    assert all(t in allowed for n, ts in graph.items() if n.startswith("reenact_core.models") for t in ts)
