"""Stage order: a deterministic topological sort (``graphlib``) and the cycles that break it."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter

__all__ = ["stage_order"]


def _named(found: Sequence[str], index: Mapping[str, int]) -> list[str]:
    """A cycle as ``graphlib`` reports it (each stage before the one that depends on it),
    turned to follow dependencies from its first stage in the recipe, back to it."""
    ring = list(reversed(found[:-1]))
    start = min(range(len(ring)), key=lambda i: index[ring[i]])
    ring = ring[start:] + ring[:start]
    return [*ring, ring[0]]


def stage_order(deps: Mapping[str, Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    """Every stage after the stages it depends on, and the cycles that prevent that.

    Among stages whose dependencies are all placed, the one declared first goes first, so a
    recipe written in dependency order keeps its own order, and the order never depends on
    anything but the recipe.

    Args:
        deps: each stage (in recipe order) with the stages it depends on; names that are not
            stages (reported elsewhere) and a stage's dependency on itself are ignored.

    Returns:
        The order, with every stage (a cycle's stages too, as if the dependency closing the
        cycle were absent), and each cycle found, as ``["a", "c", "b", "a"]``: ``a`` depends on
        ``c``, which depends on ``b``, which depends on ``a``, named from its first stage in the
        recipe.
    """
    index = {name: i for i, name in enumerate(deps)}
    graph = {
        name: list(dict.fromkeys(d for d in ups if d in index and d != name))
        for name, ups in deps.items()
    }
    cycles: list[list[str]] = []
    while True:
        sorter = TopologicalSorter(graph)
        try:
            sorter.prepare()
        except CycleError as exc:
            cycle = _named(exc.args[1], index)
            cycles.append(cycle)
            # Set aside the dependency that closes the cycle: the rest can be ordered, and
            # another cycle through the same stages is found (and named) on the next pass.
            graph[cycle[-2]].remove(cycle[-1])
            continue
        break
    ready: list[tuple[int, str]] = []
    order: list[str] = []
    while sorter.is_active():
        for name in sorter.get_ready():
            heapq.heappush(ready, (index[name], name))
        _, name = heapq.heappop(ready)
        order.append(name)
        sorter.done(name)
    return order, cycles
