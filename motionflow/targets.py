"""Run targets: ``--only AXIS=VALUE`` and ``--stage NAME`` narrow a plan to some instances.

``--only`` keeps the variants whose matrix values match every given axis (an axis given twice
matches either value); ``--stage`` keeps that stage's instances and everything they need,
transitively. Both together keep the named stages' instances in the matching variants, with
their upstreams. A stage ``over: variants`` needs every variant, so ``--only`` leaves it out
(and refuses it by name). A targeted run writes only the selected variants' outputs and
deletes nothing outside its selection: see docs/sweeps.md ("Trying one variant first").
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from motionflow.errors import UsageError
from motionflow.graph import Graph, Instance
from motionflow.recipe.matrix import Variant, slugify

if TYPE_CHECKING:
    from motionflow.cache.store import Cache
    from motionflow.plan import Plan
    from motionflow.recipe.loader import Recipe

__all__ = ["Selection", "Targets", "select", "select_recipe", "targeted_plan"]


@dataclass(frozen=True)
class Targets:
    """What the user asked to run, as typed.

    Attributes:
        only: ``AXIS=VALUE`` texts of ``--only`` flags, in order.
        stages: ``--stage`` names, in order.
    """

    only: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.only or self.stages)

    def argv(self) -> list[str]:
        """The flags again, for a printed command."""
        args: list[str] = []
        for text in self.only:
            args += ["--only", text]
        for name in self.stages:
            args += ["--stage", name]
        return args

    def to_json(self) -> dict[str, list[str]]:
        """``{"only": [...], "stage": [...]}`` (the run stamp records it)."""
        return {"only": list(self.only), "stage": list(self.stages)}

    def pairs(self) -> list[tuple[str, str]]:
        """``(axis, value)`` of each ``--only``.

        Raises:
            UsageError: a flag is not ``AXIS=VALUE``.
        """
        found: list[tuple[str, str]] = []
        for text in self.only:
            axis, sep, value = text.partition("=")
            if not sep or not axis.strip():
                msg = (
                    f"--only {text!r}: write AXIS=VALUE, a matrix axis and one of its values, "
                    "e.g. --only outfit=red-jacket"
                )
                raise UsageError(msg)
            found.append((axis.strip(), value.strip()))
        return found


@dataclass
class Selection:
    """The part of a graph that targets select.

    Attributes:
        graph: the graph narrowed to the selected instances (shared instances keep only the
            selected variants).
        variants: the matching variants.
        stages: names of the stages with a selected instance.
        skipped: stages ``over: variants`` that ``--only`` leaves out.
    """

    graph: Graph
    variants: list[Variant]
    stages: set[str] = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _hint(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _listed(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names) or "none"


def _matching(variants: list[Variant], pairs: list[tuple[str, str]], display: str) -> list[Variant]:
    """The variants whose values match every axis given (any of an axis's values)."""
    axes: dict[str, list[Any]] = {}
    for variant in variants:
        for axis, value in variant.values:
            values = axes.setdefault(axis, [])
            if value not in values:
                values.append(value)
    wanted: dict[str, set[str]] = {}
    for axis, typed in pairs:
        if axis not in axes:
            known = f"its axes: {_listed(axes)}" if axes else "it has no matrix"
            msg = f"--only {axis}={typed}: {display} has no matrix axis {axis!r}; "
            msg += f"{_hint(axis, axes)}{known}"
            raise UsageError(msg)
        texts = {_text(v): v for v in axes[axis]}
        by_slug = {slugify(v): v for v in axes[axis]}
        hit = [v for t, v in texts.items() if t == typed] or (
            [by_slug[slugify(typed)]] if slugify(typed) in by_slug else []
        )
        if not hit:
            starts = [t for t in texts if slugify(t).startswith(slugify(typed))]
            hint = f"did you mean {starts[0]!r}? " if starts else _hint(typed, [*texts, *by_slug])
            msg = (
                f"--only {axis}={typed}: {typed!r} is not a value of the axis {axis!r}; "
                f"{hint}its values: {_listed(texts)}"
            )
            raise UsageError(msg)
        wanted.setdefault(axis, set()).add(_text(hit[0]))
    chosen = [
        v
        for v in variants
        if all(_text(dict(v.values).get(axis)) in values for axis, values in wanted.items())
    ]
    if not chosen:
        asked = " ".join(f"--only {a}={t}" for a, t in pairs)
        msg = (
            f"{asked}: no variant of {display} has all of these values (matrix.exclude leaves "
            f"some combinations out); its variants: {_listed(v.id for v in variants)}"
        )
        raise UsageError(msg)
    return chosen


def select(graph: Graph, targets: Targets) -> Selection:
    """Narrow ``graph`` to the instances ``targets`` select, with everything they need.

    Raises:
        UsageError: an unknown axis, value or stage (with the closest name and the valid
            ones), a combination no variant has, or ``--only`` with a stage over variants.
    """
    recipe = graph.recipe
    variants = recipe.variants
    pairs = targets.pairs()
    chosen = _matching(variants, pairs, recipe.display) if pairs else list(variants)
    every = [*recipe.model.stages, *sorted(recipe.broken_stages)]
    for name in targets.stages:
        if name not in every:
            msg = f"--stage {name}: {recipe.display} has no stage {name!r}; "
            msg += f"{_hint(name, every)}its stages: {', '.join(every) or 'none'}"
            raise UsageError(msg)
    over_all = [n for n in every if n in recipe.model.stages and recipe.model.stages[n].over]
    if pairs:
        for name in targets.stages:
            if name in over_all:
                msg = (
                    f"--stage {name}: {name!r} runs once over all variants (over: variants), "
                    "so --only cannot narrow it; leave out --only to make it (with everything "
                    f"it needs), or leave out --stage {name}"
                )
                raise UsageError(msg)
    ids = {v.id for v in chosen}
    wanted_stages = set(targets.stages) or set(every)

    def wanted(inst: Instance) -> bool:
        if inst.stage not in wanted_stages:
            return False
        if inst.gathers:
            return not pairs
        return any(v.id in ids for v in inst.variants)

    selected: dict[str, Instance] = {}
    stack = [i for i in graph.instances if wanted(i)]
    while stack:
        inst = stack.pop()
        if inst.id in selected:
            continue
        selected[inst.id] = inst
        stack.extend(u for u in inst.upstream if u.id not in selected)
    instances: list[Instance] = []
    copies: dict[str, Instance] = {}
    for original in graph.instances:
        if original.id not in selected:
            continue
        inst = original
        if not inst.gathers and pairs:
            # a shared instance writes (and names) only the selected variants' outputs
            mine = [v for v in inst.variants if v.id in ids]
            if mine and len(mine) != len(inst.variants):
                inst = dataclasses.replace(inst, variants=mine, labels=list(inst.labels))
                copies[inst.id] = inst
        instances.append(inst)
    if copies:  # waits name the narrowed upstreams (parameters find them by id)
        for i, inst in enumerate(instances):
            if any(u.id in copies for u in inst.upstream):
                upstream = [copies.get(u.id, u) for u in inst.upstream]
                instances[i] = copies[inst.id] = dataclasses.replace(inst, upstream=upstream)
    if not instances and not graph.problems:
        asked = " ".join(targets.argv())
        msg = f"{asked}: selects no stage instance of {recipe.display}"
        raise UsageError(msg)
    by_variant = {
        vid: {s: found for s, found in stages.items() if any(i.id in selected for i in found)}
        for vid, stages in graph.by_variant.items()
        if vid in ids
    }
    narrowed = dataclasses.replace(graph, instances=instances, by_variant=by_variant)
    skipped = (
        sorted({i.stage for i in graph.instances if i.gathers})
        if pairs and not targets.stages
        else []
    )
    return Selection(narrowed, chosen, {i.stage for i in instances}, skipped)


def targeted_plan(
    recipe: Recipe,
    cache: Cache,
    targets: Targets | None = None,
    *,
    rebuild_on_tool_change: bool = False,
) -> Plan:
    """:func:`~motionflow.plan.make_plan` of the instances ``targets`` select (all without).

    A targeted plan's manifest forgets (and deletes the stale files of) only entries of the
    selected stages and variants: a targeted run leaves the other variants' outputs in place.

    Raises:
        UsageError: bad targets (see :func:`select`).
        RecipeError: as :func:`~motionflow.plan.make_plan`.
    """
    from motionflow.graph import build_graph
    from motionflow.plan import make_plan

    if not targets:
        return make_plan(recipe, cache, rebuild_on_tool_change=rebuild_on_tool_change)
    selection = select(build_graph(recipe, strict=False), targets)
    plan = make_plan(
        recipe, cache, graph=selection.graph, rebuild_on_tool_change=rebuild_on_tool_change
    )
    variants = {v.id for v in selection.variants}
    if any(i.gathers for i in selection.graph.instances):
        variants.add("")
    plan.previous.limit_to(selection.stages, variants)
    return plan


def select_recipe(recipe: Recipe, targets: Targets | None) -> Recipe:
    """``recipe`` with only the targeted variants and outputs, for the report's gallery.

    Raises:
        UsageError: bad targets (see :func:`select`).
    """
    if not targets:
        return recipe
    from motionflow.graph import build_graph

    selection = select(build_graph(recipe, strict=False), targets)
    outputs = [o for o in recipe.model.outputs if o in selection.stages]
    model = recipe.model.model_copy(update={"outputs": outputs})
    return dataclasses.replace(recipe, variants=selection.variants, model=model)
