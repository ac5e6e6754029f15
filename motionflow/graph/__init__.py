"""The stage graph: stage instances per variant, merged, ordered, with every static problem.

:func:`build_graph` is the entry point; the modules underneath, one noun each:

- ``instance``: :class:`Instance` and the references bound in its parameters.
- ``inputs``: :class:`LocalInput` and the checks of the recipe's input paths.
- ``template``: a stage's ``with:`` compiled once into templates.
- ``order``: the topological order (``graphlib``) and cycles.
- ``builder``: static checks of the stages, and rendering per variant.
- ``binding``: rendered parameters bound to upstream instances.
- ``build``: :class:`Graph` and :func:`build_graph`.
"""

from __future__ import annotations

from motionflow.graph.build import Graph, build_graph
from motionflow.graph.inputs import LocalInput
from motionflow.graph.instance import ALL_VARIANTS, GatherSlot, Instance, Interp, Slot

__all__ = [
    "ALL_VARIANTS",
    "GatherSlot",
    "Graph",
    "Instance",
    "Interp",
    "LocalInput",
    "Slot",
    "build_graph",
]
