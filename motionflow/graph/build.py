"""Building the graph: every stage bound to every variant, identical instances merged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from motionflow.errors import Diagnostic, RecipeError
from motionflow.graph.binding import bind, binder, gather, identity
from motionflow.graph.builder import Builder
from motionflow.graph.inputs import LocalInput
from motionflow.graph.instance import ALL_VARIANTS, Instance, walk_slots
from motionflow.recipe.loader import Recipe
from motionflow.recipe.schema import RemoteInput

__all__ = ["Graph", "build_graph"]


@dataclass
class Graph:
    """All instances in dependency order, and which instance each (stage, variant) uses."""

    recipe: Recipe
    instances: list[Instance]
    by_variant: dict[str, dict[str, list[Instance]]]
    inputs: dict[str, LocalInput | RemoteInput]
    stage_order: list[str]
    problems: list[Diagnostic] = field(default_factory=list)


def build_graph(recipe: Recipe, *, strict: bool = True) -> Graph:
    """Bind every stage to every variant, merge identical instances, order them.

    Every static problem is collected in one pass: a stage with a problem (and whatever
    depends on it) is left out, and the other stages are still checked and built.

    Args:
        recipe: a loaded recipe (possibly carrying problems found while loading).
        strict: raise when there is any problem; otherwise return them in
            :attr:`Graph.problems` with the instances of the healthy stages.

    Raises:
        RecipeError: (strict) unknown kinds, references, inputs, cycles, template errors,
            each with file:line:column.
    """
    builder = Builder(recipe)
    inputs = builder.check_inputs()
    builder.check_stages()
    order = builder.order()
    fan = builder.fans(order)
    stages = recipe.model.stages
    gathering = {name for name in order if stages[name].over == "variants"}
    for name in sorted(gathering):
        if stages[name].takes > 1:
            builder.problem(
                ("stages", name, "takes"),
                f"stage {name!r} runs once over all variants; takes: would repeat it. Put "
                "takes: on the generation it gathers",
            )
            builder.broken.add(name)
    rendered_by: dict[tuple[int, str], Any] = {}
    for name in builder.healthy(order):  # a gathering stage sees vars only, not matrix values
        if name in gathering:
            rendered_by[-1, name] = builder.render_stage(name, dict(recipe.vars))
    per_variant = [name for name in builder.healthy(order) if name not in gathering]
    broken = len(builder.broken)
    for vi, variant in enumerate(recipe.variants):  # every template error, before building
        context = {**recipe.vars, **dict(variant.values)}
        if len(builder.broken) != broken:  # a template failed: it and what it feeds stop
            per_variant = [name for name in builder.healthy(order) if name not in gathering]
            broken = len(builder.broken)
        for name in per_variant:
            rendered_by[vi, name] = builder.render_stage(name, context)
    healthy = builder.healthy(order)

    instances: dict[tuple[Any, ...], Instance] = {}
    by_variant: dict[str, dict[str, list[Instance]]] = {v.id: {} for v in recipe.variants}

    for name in healthy:  # stage by stage: a gathering stage needs every variant's upstreams
        spec = stages[name]
        if name in gathering:
            params, labels = gather(rendered_by[-1, name], by_variant, recipe.variants)
            upstream = [s.upstream for _, s in walk_slots(params, ()) if s.upstream]
            for needed in spec.needs:
                upstream.extend(i for v in recipe.variants for i in by_variant[v.id][needed])
            unique = list({id(u): u for u in upstream}.values())
            inst = Instance(
                f"{name}#{len(instances)}",
                name,
                builder.impls[name],
                0,
                None,
                params,
                unique,
                [ALL_VARIANTS],
                labels,
            )
            instances[(name, "$all")] = inst
            for variant in recipe.variants:
                by_variant[variant.id][name] = [inst]
            continue
        source = fan[name]
        count = stages[source].takes if source else 1
        linked = any(r.scope == "stages" for r, _, _ in builder.refs[name])
        for vi, variant in enumerate(recipe.variants):
            mine = by_variant[variant.id]
            rendered = rendered_by[vi, name]
            made: list[Instance] = []
            for t in range(count):
                if linked:
                    params = bind(rendered, binder(mine, t))
                    upstream = [s.upstream for _, s in walk_slots(params, ()) if s.upstream]
                else:  # nothing to bind: the rendered parameters are shared as they are
                    params, upstream = rendered, []
                for needed in spec.needs:
                    upstream.extend(mine.get(needed, []))
                take = t if source == name else 0
                unique = list({id(u): u for u in upstream}.values())
                ident = (name, take, identity(params), tuple(sorted(u.id for u in unique)))
                found = instances.get(ident)
                if found is None:
                    label = t + 1 if count > 1 else None
                    found = Instance(
                        f"{name}#{len(instances)}",
                        name,
                        builder.impls[name],
                        take,
                        label,
                        params,
                        unique,
                    )
                    instances[ident] = found
                found.variants.append(variant)
                made.append(found)
            mine[name] = made
    if strict and builder.problems:
        raise RecipeError(builder.problems)
    ordered = sorted(instances.values(), key=lambda i: int(i.id.rsplit("#", 1)[1]))
    return Graph(recipe, ordered, by_variant, inputs, order, builder.problems)
