"""Print motionflow's layers and the imports between them, read from the source.

    python scripts/layers.py          # the layers, top to bottom, with their modules and sizes
    python scripts/layers.py --check  # also list imports that climb a layer or close a cycle
    python scripts/layers.py --dot    # the package-level import graph, for Graphviz

A module may import modules of its own layer and of the layers below it, never above. Every
``import`` counts, including those inside functions and under ``TYPE_CHECKING``.
tests/test_layers.py holds the package to this; docs/architecture.md explains the layers.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "motionflow"

#: Top to bottom. A name is a module or a package (``cache`` covers ``motionflow.cache.*``).
LAYERS: list[tuple[str, ...]] = [
    ("cli",),
    ("__init__",),
    ("report", "scaffold"),
    ("review", "planfile", "stamp", "impact", "why", "targets", "budget", "dag", "ledger"),
    ("engine", "executor", "generation"),
    ("plan",),
    ("materialize", "manifest", "resolve", "fetch"),
    ("graph",),
    ("recipe",),
    ("stages",),
    ("providers", "publish"),
    ("fakeapi",),
    ("cache", "media"),
    (
        "artifacts",
        "errors",
        "events",
        "infile",
        "keys",
        "limits",
        "loopback",
        "money",
        "outfile",
        "project",
        "s3client",
        "version",
        "worddiff",
    ),
]


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target``, at ``where`` (``path:line``); ``names`` are the names a
    ``from target import ...`` takes."""

    source: str
    target: str
    where: str
    names: tuple[str, ...] = ()


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of_package(root: Path = PACKAGE, *, external: bool = False) -> list[Edge]:
    """Every import between modules of the package (and of other top-level names if asked)."""
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    edges: list[Edge] = []
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            names: tuple[str, ...] = ()
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                # ``from pkg import mod`` imports the module pkg.mod, not only pkg
                subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in files]
                targets = subs or [module]
                names = () if subs else tuple(a.name for a in node.names)
            where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
            for target in targets:
                inside = target in files and target != name
                outside = external and target.split(".")[0] != root.name
                if inside or outside:
                    edges.append(Edge(name, target, where, names))
    return edges


def layer_of(module: str) -> int | None:
    """The index of ``module``'s layer in :data:`LAYERS` (0 is the top), or None."""
    parts = module.split(".")
    if parts[0] != "motionflow":
        return None
    short = parts[1] if len(parts) > 1 else "__init__"
    for index, layer in enumerate(LAYERS):
        if short in layer:
            return index
    return None


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The import cycles among ``edges``' modules (each as its sorted members), none if acyclic."""
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in edges:
        graph[edge.source].add(edge.target)
    found: list[list[str]] = []
    while True:
        try:
            TopologicalSorter(graph).prepare()
        except CycleError as exc:
            # each member is a predecessor (an import) of the next: graph[next] holds it
            members = exc.args[1]
            found.append(sorted(set(members)))
            if members[0] not in graph[members[1]]:  # never expected: stop rather than spin
                return found
            graph[members[1]].discard(members[0])  # cut it, look for the next one
        else:
            return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list the imports that break a rule")
    parser.add_argument("--dot", action="store_true", help="print a Graphviz graph of packages")
    args = parser.parse_args()
    edges = imports_of_package()
    if args.dot:
        print("digraph motionflow {\n  rankdir=TB; node [shape=box];")
        pairs = {
            (e.source.split(".")[1], e.target.split(".")[1])
            for e in edges
            if len(e.source.split(".")) > 1 and len(e.target.split(".")) > 1
        }
        for a, b in sorted(pairs):
            if a != b:
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    sizes: dict[str, int] = defaultdict(int)
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path, PACKAGE)
        short = name.split(".")[1] if "." in name else "__init__"
        sizes[short] += len(path.read_text(encoding="utf-8").splitlines())
    for index, layer in enumerate(LAYERS):
        cells = [f"{name} ({sizes.get(name, 0)})" for name in layer if sizes.get(name)]
        print(f"{index:2}  " + ", ".join(cells))
    if args.check:
        bad = [
            e
            for e in edges
            if (a := layer_of(e.source)) is not None
            and (b := layer_of(e.target)) is not None
            and b < a
        ]
        for e in bad:
            print(f"climbs: {e.where}: {e.source} imports {e.target}")
        for cycle in cycles(edges):
            print("cycle: " + " -> ".join(cycle))
        return 1 if bad or cycles(edges) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
