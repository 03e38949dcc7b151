"""The packages' import structure: no cycles, no reaching into private modules, bench stays outside.

The graph is read from the source with `ast`, without importing anything. Only
imports that run when a module is first imported count: those at module level
(also inside module-level `if`/`try`/`with` blocks and class bodies). Imports
inside functions are lazy by design, and imports under `if TYPE_CHECKING:` never
run. Importing a package counts as importing its `__init__`; `from pkg import
name` counts as importing the submodule `pkg.name` when there is one, else `pkg`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actors", "gateway", "ratelimit", "bench")


def module_files() -> dict[str, Path]:
    """Every module of PACKAGES, by dotted name (a package's `__init__.py` is the package itself)."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _runtime_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run at import time, descending into blocks but not into functions."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _runtime_statements(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody"):
            yield from _runtime_statements(getattr(node, field, []))
        for handler in getattr(node, "handlers", []):
            yield from _runtime_statements(handler.body)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """`name` if it is one of our modules, else its longest prefix that is (`import a.b.attr`)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, modules: dict[str, Path], *, lazy: bool = False) -> set[str]:
    """The modules of PACKAGES that `module` imports when it is imported (with `lazy`, anywhere in it)."""
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in (ast.walk(tree) if lazy else _runtime_statements(tree.body)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = _known(target, modules)
            if resolved is not None and resolved != module:
                found.add(resolved)
    return found


def import_graph(*, lazy: bool = False) -> dict[str, set[str]]:
    modules = module_files()
    return {module: imports_of(module, modules, lazy=lazy) for module in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _describe(components: list[list[str]], graph: dict[str, set[str]]) -> str:
    lines = []
    for component in components:
        members = set(component)
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
        lines.append(f"cycle among {', '.join(component)}:\n    " + "\n    ".join(edges))
    return "\n".join(lines)


def _top_package(module: str) -> str:
    return module.partition(".")[0]


def test_the_checker_sees_imports_and_cycles():
    graph, anywhere = import_graph(), import_graph(lazy=True)
    assert "actors._transport" in graph["actors"]
    assert "bench.simulator" in anywhere["gateway._cli"] and "bench.simulator" not in graph["gateway._cli"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, _describe(found, graph)


def test_bench_stays_outside_and_private_actors_modules_stay_private():
    """Only `gateway simulator` reaches bench, lazily; bench and gateway use actors' public names, even lazily."""
    at_import, anywhere = import_graph(), import_graph(lazy=True)
    wrong = []
    for module in sorted(anywhere):
        top = _top_package(module)
        if top in ("actors", "gateway", "ratelimit"):
            wrong += [f"{module} imports {t} at module level" for t in sorted(at_import[module])
                      if _top_package(t) == "bench"]
        if top in ("bench", "gateway"):
            wrong += [f"{module} imports the private {t}" for t in sorted(anywhere[module])
                      if _top_package(t) == "actors" and any(p.startswith("_") for p in t.split(".")[1:])]
    assert not wrong, "\n".join(wrong)
