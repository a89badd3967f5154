"""The package's layers and its import graph, read from the source (no module is imported).

Each sub-package sits in one layer and imports only from its own layer or lower ones, and no
group of modules imports itself in a circle. ``python -m diffad._layers`` prints the graph;
the tests hold the package to it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

#: Layer of each sub-package (top-level modules are the core, layer 0). Lower layers never
#: import higher ones: the region test (``selective``) builds on the localisers (``image``),
#: never the reverse.
LAYERS: dict[str, int] = {
    "(core)": 0,
    "diffusion": 1,
    "data": 1,
    "metrics": 1,
    "image": 2,
    "tabular": 2,
    "conformal": 2,
    "selective": 3,
    "report": 4,
    "demo": 4,
    "bench": 4,
    "cli": 5,
    "__main__": 5,  # ``python -m diffad``: the command line
}

PACKAGE_ROOT = Path(__file__).resolve().parent


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def import_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """Module → the package's modules it imports (at any depth of its code)."""
    modules = _modules(root)
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            edges[name].update(n for n in names if n in modules and n != name)
    return {name: set(edges.get(name, ())) for name in modules}


def subpackage(module: str) -> str:
    """``diffad.image.scores`` → ``image``; top-level modules → ``(core)``."""
    parts = module.split(".")
    if len(parts) == 2 and parts[1] not in LAYERS:
        return "(core)"
    return parts[1] if len(parts) > 1 else "(core)"


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Sub-package → the other sub-packages it imports."""
    out: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            a, b = subpackage(module), subpackage(target)
            if a != b:
                out[a].add(b)
    return dict(out)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (import circles)."""
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
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(module, imported module) pairs that import from a higher layer."""
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if LAYERS[subpackage(target)] > LAYERS[subpackage(module)]:
                bad.append((module, target))
    return bad


def main() -> None:
    """Print the sub-package graph by layer, circles and upward imports."""
    graph = import_graph()
    packages = package_graph(graph)
    for name in sorted(LAYERS, key=lambda n: (LAYERS[n], n)):
        imports = ", ".join(sorted(packages.get(name, ()))) or "-"
        print(f"layer {LAYERS[name]}  {name:10s} -> {imports}")
    print(f"import circles: {cycles(graph) or 'none'}")
    print(f"imports from a higher layer: {upward_imports(graph) or 'none'}")


if __name__ == "__main__":
    main()
