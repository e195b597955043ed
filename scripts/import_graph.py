"""Print the import graph figures of a package: loops, upward imports, levels, arrows.

    python scripts/import_graph.py                 # elmo_lm/, one node per file
    python scripts/import_graph.py --folders       # subpackages as one node each
    python scripts/import_graph.py --list          # also every arrow, by level

Every import statement counts, at module level or inside a function (also under `if TYPE_CHECKING:`):
an arrow A -> B means some line of A imports B. `from .pkg import name` points at the submodule
`pkg/name.py` when there is one, else at `pkg/__init__.py`. Figures:

- loops: groups of modules that import each other (strongly connected components of two or more);
- upward imports: the fewest arrows whose removal leaves no loop (a minimum feedback arc set, found
  exhaustively inside each loop): the imports that run back up against the flow of the rest;
- levels: the length of the longest chain of arrows, loops counted as one node (level 1 imports nothing);
- arrows: distinct module -> module imports.

Standard library only (ast), so it runs anywhere without the package's dependencies.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import sys
from pathlib import Path

Graph = dict[str, set[str]]


def module_names(package: Path) -> dict[str, Path]:
    """Every module of `package` by dotted name (a package is its `__init__`)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _resolve(node: ast.ImportFrom | ast.Import, current: str, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that one import statement imports."""
    found = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            name = alias.name
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
        return found
    if node.level:
        base = current if _is_package(current, modules) else current.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    if target not in modules:
        return found
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.add(sub if sub in modules else target)
    return found


def import_graph(package: Path) -> Graph:
    """Module -> the modules of the same package it imports (anywhere in its code)."""
    modules = module_names(package)
    graph: Graph = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= _resolve(node, name, modules) - {name}
    return graph


def fold_folders(graph: Graph, root: str) -> Graph:
    """The same graph with every subpackage of `root` as one node."""

    def node(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 else name

    folded: Graph = {}
    for source, targets in graph.items():
        folded.setdefault(node(source), set()).update(node(t) for t in targets)
    for source, targets in folded.items():
        targets.discard(source)
    return folded


def loops(graph: Graph) -> list[list[str]]:
    """Strongly connected components of two or more nodes (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

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

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_arrows(graph: Graph, component: list[str]) -> list[tuple[str, str]]:
    """The fewest arrows inside one loop whose removal breaks it (exhaustive up to 8 nodes, else greedy)."""
    inside = [(a, b) for a in component for b in graph[a] if b in component]
    if len(component) <= 8:
        best = None
        for order in itertools.permutations(component):
            rank = {name: i for i, name in enumerate(order)}
            back = [(a, b) for a, b in inside if rank[b] < rank[a]]
            if best is None or len(back) < len(best):
                best = back
        return sorted(best or [])
    order = sorted(component, key=lambda n: sum(1 for a, b in inside if b == n) - sum(1 for a, b in inside if a == n))
    rank = {name: i for i, name in enumerate(order)}
    return sorted((a, b) for a, b in inside if rank[b] < rank[a])


def levels(graph: Graph, removed: set[tuple[str, str]]) -> dict[str, int]:
    """Level of every node once the upward arrows are removed: 1 + the highest level it imports."""
    level: dict[str, int] = {}

    def visit(v: str) -> int:
        if v not in level:
            level[v] = 0  # guard; the graph is acyclic once `removed` is out
            level[v] = 1 + max((visit(w) for w in graph[v] if (v, w) not in removed), default=0)
        return level[v]

    for v in graph:
        visit(v)
    return level


def figures(graph: Graph) -> tuple[list[list[str]], list[tuple[str, str]], dict[str, int], int]:
    """Loops, upward arrows, levels and the number of arrows of a graph."""
    found = loops(graph)
    upward = [arrow for component in found for arrow in upward_arrows(graph, component)]
    return found, upward, levels(graph, set(upward)), sum(len(t) for t in graph.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default=str(Path(__file__).resolve().parents[1] / "elmo_lm"))
    parser.add_argument("--folders", action="store_true", help="count each subpackage as one node")
    parser.add_argument("--list", action="store_true", help="print every module and its arrows by level")
    args = parser.parse_args()
    package = Path(args.package)
    graph = import_graph(package)
    if args.folders:
        graph = fold_folders(graph, package.name)
    found, upward, level, arrows = figures(graph)
    print(f"{package.name}/ ({'subpackages folded' if args.folders else 'one node per file'}): "
          f"{len(graph)} modules, {len(found)} import loops, {len(upward)} upward imports, "
          f"{max(level.values(), default=0)} levels, {arrows} arrows")
    for component in found:
        print("  loop:", " ".join(component))
    for a, b in upward:
        print(f"  upward: {a} -> {b}")
    if args.list:
        for name in sorted(graph, key=lambda n: (-level[n], n)):
            print(f"  {level[name]:2d} {name} -> {', '.join(sorted(graph[name])) or '-'}")


if __name__ == "__main__":
    main()
