"""Rendering the stage graph as text, Mermaid or Graphviz dot."""

from __future__ import annotations

from collections import Counter
from typing import Any

from motionflow.graph import Graph

__all__ = ["dag_json", "render_dag"]


def _edges(graph: Graph) -> list[tuple[str, str]]:
    edges: set[tuple[str, str]] = set()
    for inst in graph.instances:
        for up in inst.upstream:
            edges.add((up.stage, inst.stage))
        for _, slot in inst.slots():
            if slot.upstream is None:
                edges.add((f"inputs.{slot.ref.name}", inst.stage))
    return sorted(edges)


def dag_json(graph: Graph) -> dict[str, Any]:
    """The stage-level graph as data (``motionflow dag --json``): nodes, then edges.

    Inputs are nodes of kind ``input`` named ``inputs.NAME``; stages are nodes of kind
    ``stage`` with their stage kind (``uses``), instance count and whether they are outputs.
    """
    counts = Counter(inst.stage for inst in graph.instances)
    stages = graph.recipe.model.stages
    outputs = set(graph.recipe.model.outputs)
    edges = _edges(graph)
    nodes: list[dict[str, Any]] = [
        {"id": name, "kind": "input"}
        for name in sorted({a for a, _ in edges if a.startswith("inputs.")})
    ]
    nodes += [
        {
            "id": name,
            "kind": "stage",
            "uses": stages[name].uses,
            "instances": counts.get(name, 0),
            "output": name in outputs,
        }
        for name in graph.stage_order
    ]
    return {
        "recipe": graph.recipe.model.name,
        "nodes": nodes,
        "edges": [{"from": a, "to": b} for a, b in edges],
    }


def render_dag(graph: Graph, fmt: str) -> str:
    """The stage-level graph: one node per stage (with its instance count), inputs, edges."""
    counts = Counter(inst.stage for inst in graph.instances)
    stages = graph.recipe.model.stages
    label = {
        name: f"{name} ({stages[name].uses}) x{counts.get(name, 0)}" for name in graph.stage_order
    }
    edges = _edges(graph)
    inputs = sorted({a for a, _ in edges if a.startswith("inputs.")})
    outputs = set(graph.recipe.model.outputs)
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        for name in inputs:
            lines.append(f'  {name.replace(".", "_")}[/"{name}"/]')
        for name in graph.stage_order:
            shape = ('(["', '"])') if name in outputs else ('["', '"]')
            lines.append(f"  {name}{shape[0]}{label[name]}{shape[1]}")
        lines += [f"  {a.replace('.', '_')} --> {b}" for a, b in edges]
        return "\n".join(lines)
    if fmt == "dot":
        lines = ["digraph motionflow {", "  rankdir=LR;"]
        for name in inputs:
            lines.append(f'  "{name}" [shape=note];')
        for name in graph.stage_order:
            style = ", style=bold" if name in outputs else ""
            lines.append(f'  "{name}" [shape=box, label="{label[name]}"{style}];')
        lines += [f'  "{a}" -> "{b}";' for a, b in edges]
        lines.append("}")
        return "\n".join(lines)
    lines = []
    for name in graph.stage_order:
        deps = sorted(a for a, b in edges if b == name)
        mark = "  (output)" if name in outputs else ""
        lines.append(f"{label[name]}{mark}")
        lines += [f"  <- {d}" for d in deps]
    return "\n".join(lines)
