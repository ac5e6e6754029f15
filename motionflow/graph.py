"""Stage instances: templating per variant, static references, dedup, order and cycle errors."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motionflow.errors import Diagnostic, RecipeError
from motionflow.recipe.loader import Recipe
from motionflow.recipe.matrix import Variant
from motionflow.recipe.refs import REF_PATTERN, Ref, RefSyntaxError, find_refs
from motionflow.recipe.schema import RemoteInput
from motionflow.recipe.templating import (
    TemplateProblem,
    has_jinja,
    render_template,
    template_names,
)
from motionflow.stages.base import Stage
from motionflow.stages.registry import UnknownStageKind, get_stage

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

_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
#: The pseudo-variant of a stage ``over: variants``: its results go to ``out/<recipe>/``.
ALL_VARIANTS = Variant("", ())
ParamPath = tuple[str | int, ...]


@dataclass(frozen=True)
class LocalInput:
    """A local input file, resolved against the recipe's folder."""

    name: str
    path: Path


@dataclass(frozen=True)
class Slot:
    """A parameter bound to an input or to an output field of an upstream instance."""

    ref: Ref
    upstream: Instance | None = None


@dataclass(frozen=True)
class GatherSlot:
    """In a stage ``over: variants``: a reference bound to the instances of every variant."""

    ref: Ref
    upstreams: tuple[Instance, ...]


@dataclass(frozen=True)
class Interp:
    """A string with references inside it: ``"${stages.p.text}, at night"``."""

    parts: tuple[str | Slot, ...]


@dataclass(eq=False)
class Instance:
    """A stage bound to one or more variants (identical bindings are one instance).

    Attributes:
        id: unique within the graph (``stage#n``); instances with the same stage, bound
            parameters, take and upstreams are merged into one.
        stage: the stage's name in the recipe.
        impl: the stage kind.
        take: the take index that goes into the key (0 unless the stage has ``takes``).
        take_label: 1-based take number shown in names when several takes exist, else None.
        params: parameters after templating; references are :class:`Slot`/:class:`Interp`.
        upstream: instances this one waits for (references and ``needs``).
        variants: the variants that use this instance.
    """

    id: str
    stage: str
    impl: Stage
    take: int
    take_label: int | None
    params: dict[str, Any]
    upstream: list[Instance]
    variants: list[Variant] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    @property
    def gathers(self) -> bool:
        """True for the single instance of a stage ``over: variants``."""
        return self.variants == [ALL_VARIANTS]

    @property
    def label(self) -> str:
        """``stage[variant, take]`` for messages; shared instances name their first variant."""
        if self.gathers:
            return f"{self.stage}[all variants]"
        variant = (
            self.variants[0].id if len(self.variants) == 1 else f"{len(self.variants)} variants"
        )
        take = f", take {self.take_label}" if self.take_label else ""
        return f"{self.stage}[{variant}{take}]"

    def slots(self) -> Iterator[tuple[ParamPath, Slot]]:
        """Every reference in the parameters, with its parameter path."""
        yield from _walk_slots(self.params, ())


def _walk_slots(value: Any, path: ParamPath) -> Iterator[tuple[ParamPath, Slot]]:
    if isinstance(value, Slot):
        yield path, value
    elif isinstance(value, GatherSlot):
        for upstream in value.upstreams:
            yield path, Slot(value.ref, upstream)
    elif isinstance(value, Interp):
        for part in value.parts:
            if isinstance(part, Slot):
                yield path, part
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_slots(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_slots(v, (*path, i))


@dataclass
class Graph:
    """All instances in dependency order, and which instance each (stage, variant) uses."""

    recipe: Recipe
    instances: list[Instance]
    by_variant: dict[str, dict[str, list[Instance]]]
    inputs: dict[str, LocalInput | RemoteInput]
    stage_order: list[str]
    problems: list[Diagnostic] = field(default_factory=list)


@dataclass(frozen=True)
class _StrTemplate:
    """A string parameter split into Jinja source (references as placeholders) and refs."""

    source: str
    refs: tuple[Ref, ...]
    jinja: bool


def _compile_params(
    value: Any, path: ParamPath, refs_out: list[tuple[Ref, ParamPath, int]], errors: list[Any]
) -> Any:
    if isinstance(value, dict):
        return {k: _compile_params(v, (*path, k), refs_out, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_params(v, (*path, i), refs_out, errors) for i, v in enumerate(value)]
    if not isinstance(value, str) or ("${" not in value and not has_jinja(value)):
        return value
    found = find_refs(value)
    refs: list[Ref] = []
    pieces: list[str] = []
    last = 0
    for ref, start, end in found:
        pieces.append(value[last:start])
        last = end
        if isinstance(ref, RefSyntaxError):
            errors.append((path, ref))
            pieces.append("")
            continue
        refs_out.append((ref, path, start))
        pieces.append(f"\x00{len(refs)}\x00")
        refs.append(ref)
    pieces.append(value[last:])
    source = "".join(pieces).replace("$${", "${")
    return _StrTemplate(source, tuple(refs), has_jinja(source))


class _Builder:
    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.smap = recipe.smap
        self.problems: list[Diagnostic] = list(recipe.problems)
        self.seen_problems: set[tuple[str, int, int]] = set()
        # Stages with a problem, and inputs that are unusable: skipped (with everything that
        # depends on them) so the remaining stages can still be checked in the same pass.
        self.broken: set[str] = set(recipe.broken_stages)
        self.bad_inputs: set[str] = set()
        self.deps: dict[str, list[str]] = {}
        self.impls: dict[str, Stage] = {}
        self.templates: dict[str, Any] = {}
        self.refs: dict[str, list[tuple[Ref, ParamPath, int]]] = {}
        self.names: dict[str, tuple[str, ...]] = {}
        self.render_memo: dict[tuple[Any, ...], Any] = {}

    def problem(self, path: ParamPath, message: str, **kw: Any) -> None:
        diag = self.smap.diagnostic(path, message, **kw)
        marker = (diag.message, diag.line, diag.column)
        if marker not in self.seen_problems:
            self.seen_problems.add(marker)
            self.problems.append(diag)

    # -- static checks, once per stage -------------------------------------------------------
    def check_inputs(self) -> dict[str, LocalInput | RemoteInput]:
        resolved: dict[str, LocalInput | RemoteInput] = {}
        base = self.recipe.path.parent
        root = self.recipe.root
        for name, spec in self.recipe.model.inputs.items():
            if isinstance(spec, RemoteInput):
                resolved[name] = spec
                continue
            where = ("inputs", name)
            try:  # a symlink loop, a path too long or with a NUL: the user's, not a bug
                candidate = Path(spec).expanduser()
                path = (candidate if candidate.is_absolute() else base / candidate).resolve()
                is_file, is_dir = path.is_file(), path.is_dir()
            except (OSError, RuntimeError, ValueError) as exc:
                loop = isinstance(exc, RuntimeError) and "loop" in str(exc).lower()
                cause = "a loop of symbolic links" if loop else exc
                self.problem(
                    where,
                    f"input {name!r}: cannot follow the path {spec!r} ({cause}); fix or remove "
                    "the symbolic link, or name the file by a plain path relative to the recipe",
                )
                self.bad_inputs.add(name)
                continue
            if not self.recipe.allow_outside_project and not path.is_relative_to(root):
                self.problem(
                    where,
                    f"input {name!r} points outside the project folder {str(root)!r} "
                    f"({spec!r} resolves to {str(path)!r}); move the file into the project, or "
                    "pass --allow-outside-project if you mean it",
                )
                self.bad_inputs.add(name)
                continue
            if not is_file:
                what = (
                    "is a folder"
                    if is_dir
                    else "is not a regular file (a device, FIFO or socket?); give an image or "
                    "video file"
                    if path.exists()
                    else "does not exist"
                )
                self.problem(
                    where,
                    f"input {name!r}: {spec!r} {what} (looked for {str(path)!r}); paths are "
                    "relative to the recipe's folder",
                )
                self.bad_inputs.add(name)
                continue
            resolved[name] = LocalInput(name, path)
        return resolved

    def check_stages(self) -> None:
        stages = self.recipe.model.stages
        for name, spec in stages.items():
            try:
                impl = get_stage(spec.uses)
            except UnknownStageKind as exc:
                self.problem(("stages", name, "uses"), str(exc))
                self.broken.add(name)
                continue
            self.impls[name] = impl
            if spec.takes > 1 and not impl.takes_allowed:
                self.problem(
                    ("stages", name, "takes"),
                    f"stage {name!r} ({spec.uses}) is deterministic: {spec.takes} takes would be "
                    "identical copies; remove takes:",
                )
                self.broken.add(name)
            refs: list[tuple[Ref, ParamPath, int]] = []
            errors: list[tuple[ParamPath, RefSyntaxError]] = []
            self.templates[name] = _compile_params(spec.with_, ("with",), refs, errors)
            for path, bad in errors:
                self.problem(
                    ("stages", name, *path),
                    f"{bad.text!r} is not a reference; write ${{inputs.NAME}} or "
                    "${stages.NAME.FIELD} (and $${ for a literal ${)",
                    offset=bad.offset,
                )
                self.broken.add(name)
            self.refs[name] = refs
        for name, spec in stages.items():
            if spec.over != "variants":
                continue
            for ref, path, offset in self.refs.get(name, []):
                whole = REF_PATTERN.fullmatch(str(_value_at(spec.with_, path[1:])).strip())
                if ref.scope == "stages" and not whole:
                    self.problem(
                        ("stages", name, *path),
                        f"in a stage over variants, {ref} is a list (one per variant) and "
                        "cannot be part of a longer string; give it a parameter of its own",
                        offset=offset,
                    )
                    self.broken.add(name)
        every = [*stages, *sorted(self.recipe.broken_stages)]
        for name, refs in self.refs.items():
            for ref, path, offset in refs:
                if not self.check_ref(name, ref, ("stages", name, *path), offset):
                    self.broken.add(name)
            for i, needed in enumerate(stages[name].needs):
                if needed not in every:
                    self.unknown(("stages", name, "needs", i), "stage", needed, every)
                    self.broken.add(name)
        for i, out in enumerate(self.recipe.model.outputs):
            if out not in every:
                self.unknown(("outputs", i), "stage", out, every)

    def unknown(self, where: ParamPath, what: str, name: str, known: list[str], **kw: Any) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        listed = ", ".join(known) or "none"
        self.problem(where, f"unknown {what} {name!r}; {hint}known: {listed}", **kw)

    def check_ref(self, stage: str, ref: Ref, where: ParamPath, offset: int) -> bool:
        """Report a bad reference; False when ``stage`` cannot be built (quietly so when the
        reference is to something already reported)."""
        if ref.scope == "inputs":
            if ref.name in self.recipe.broken_inputs:  # already reported, by the loader
                return False
            if ref.name not in self.recipe.model.inputs:
                self.unknown(
                    where, "input", ref.name, list(self.recipe.model.inputs), offset=offset
                )
                return False
            return ref.name not in self.bad_inputs
        if ref.name in self.recipe.broken_stages:
            return False
        if ref.name not in self.recipe.model.stages:
            known = [*self.recipe.model.stages, *sorted(self.recipe.broken_stages)]
            self.unknown(where, "stage", ref.name, known, offset=offset)
            return False
        if ref.name == stage:
            self.problem(where, f"stage {stage!r} refers to itself", offset=offset)
            return False
        impl = self.impls.get(ref.name)
        if impl is not None and ref.field not in impl.outputs:
            kind = self.recipe.model.stages[ref.name].uses
            self.unknown(
                where,
                f"output of {ref.name!r} ({kind})",
                str(ref.field),
                list(impl.outputs),
                offset=offset,
            )
            return False
        return True

    def order(self) -> list[str]:
        stages = self.recipe.model.stages
        deps = {
            name: sorted(
                {r.name for r, _, _ in self.refs.get(name, []) if r.scope == "stages"}
                | set(stages[name].needs)
            )
            for name in stages
        }
        self.deps = deps
        order: list[str] = []
        state: dict[str, int] = {}
        # Depth-first, post-order, with an explicit stack (a recipe may chain thousands of
        # stages: recursion would overflow): the same order a recursive walk gives.
        for name in stages:
            if name in state:
                continue
            state[name] = 1
            stack: list[str] = [name]
            pending: list[Iterator[str]] = [iter(deps[name])]
            while pending:
                node = stack[-1]
                for dep in pending[-1]:
                    if dep not in stages or dep == node:
                        continue
                    if state.get(dep) == 1:
                        cycle = [*stack[stack.index(dep) :], dep]
                        self.broken.update(cycle)
                        self.problem(
                            ("stages", dep),
                            "stages form a cycle: " + " -> ".join(cycle) + "; a stage cannot"
                            " depend (through ${stages...} or needs:) on a stage that depends"
                            " on it",
                            at_key=True,
                        )
                    elif dep not in state:
                        state[dep] = 1
                        stack.append(dep)
                        pending.append(iter(deps[dep]))
                        break
                else:
                    pending.pop()
                    stack.pop()
                    state[node] = 2
                    order.append(node)
        return order

    def fans(self, order: list[str]) -> dict[str, str | None]:
        stages = self.recipe.model.stages
        fan: dict[str, str | None] = {}
        for name in order:
            sources = {
                fan[r.name]
                for r, _, _ in self.refs.get(name, [])
                if r.scope == "stages" and fan.get(r.name)
            }
            if stages[name].takes > 1:
                if sources:
                    self.problem(
                        ("stages", name, "takes"),
                        f"stage {name!r} has takes: but consumes "
                        f"{sorted(s or '' for s in sources)}, which already has several takes;"
                        " keep takes: on one of them",
                    )
                    self.broken.add(name)
                fan[name] = name
            elif len(sources) > 1:
                self.problem(
                    ("stages", name),
                    f"stage {name!r} consumes several stages with takes "
                    f"({sorted(map(str, sources))}); motionflow cannot pair their takes:"
                    " give all but one takes: 1",
                    at_key=True,
                )
                self.broken.add(name)
                fan[name] = None
            else:
                fan[name] = next(iter(sources)) if sources else None
        return fan

    def healthy(self, order: list[str]) -> list[str]:
        """Stages with no problem of their own or upstream, in dependency order."""
        good: list[str] = []
        for name in order:
            if name in self.broken or name not in self.impls:
                continue
            if all(d in good for d in self.deps[name] if d in self.recipe.model.stages):
                good.append(name)
        return good

    # -- per variant -------------------------------------------------------------------------
    def render_stage(self, stage: str, context: dict[str, Any]) -> Any:
        """Render a stage's ``with:`` for one variant, shared between variants that give the
        names its templates read the same values."""
        names = self.names.get(stage)
        if names is None:
            found: set[str] = set()
            _collect_names(self.templates[stage], found)
            names = self.names[stage] = tuple(sorted(found))
        try:
            memo_key = (stage, *(context.get(n, _MISSING) for n in names))
            hash(memo_key)
        except TypeError:  # a list or mapping var: render without sharing
            return self.render(stage, self.templates[stage], ("with",), context)
        rendered = self.render_memo.get(memo_key, _MISSING)
        if rendered is _MISSING:
            rendered = self.render(stage, self.templates[stage], ("with",), context)
            self.render_memo[memo_key] = rendered
        return rendered

    def render(self, stage: str, value: Any, path: ParamPath, context: dict[str, Any]) -> Any:
        if isinstance(value, dict):
            return {k: self.render(stage, v, (*path, k), context) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(stage, v, (*path, i), context) for i, v in enumerate(value)]
        if not isinstance(value, _StrTemplate):
            return value
        text = value.source
        if value.jinja:
            try:
                text = render_template(value.source, context)
            except TemplateProblem as exc:
                extra = f" (template line {exc.line})" if exc.line > 1 else ""
                self.problem(("stages", stage, *path), exc.message + extra)
                self.broken.add(stage)
                return None
        if not value.refs:
            return text
        parts: list[str | Slot] = []
        for i, piece in enumerate(_PLACEHOLDER.split(text)):
            if i % 2:
                parts.append(Slot(value.refs[int(piece)]))
            elif piece:
                parts.append(piece)
        if len(parts) == 1 and isinstance(parts[0], Slot):
            return parts[0]
        return Interp(tuple(parts))


_MISSING = object()


def _value_at(value: Any, path: ParamPath) -> Any:
    for part in path:
        value = value[part]
    return value


def _collect_names(value: Any, found: set[str]) -> None:
    if isinstance(value, _StrTemplate) and value.jinja:
        found.update(template_names(value.source))
    elif isinstance(value, dict):
        for item in value.values():
            _collect_names(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect_names(item, found)


def _binder(mine: dict[str, list[Instance]], take: int) -> Any:
    """Bind a slot to this variant's upstream instance (the same take when it fans out)."""

    def resolve(slot: Slot) -> Slot:
        if slot.ref.scope == "inputs":
            return slot
        ups = mine[slot.ref.name]
        return Slot(slot.ref, ups[take] if len(ups) > 1 else ups[0])

    return resolve


def _bind(value: Any, resolve: Any) -> Any:
    if isinstance(value, Slot):
        return resolve(value)
    if isinstance(value, Interp):
        return Interp(tuple(resolve(p) if isinstance(p, Slot) else p for p in value.parts))
    if isinstance(value, dict):
        return {k: _bind(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [_bind(v, resolve) for v in value]
    return value


def _gather(
    rendered: Any,
    by_variant: dict[str, dict[str, list[Instance]]],
    variants: list[Variant],
) -> tuple[Any, list[str]]:
    """Bind a gathering stage: each stage reference lists that stage's instances over every
    variant (each once, in matrix order, takes in order). Labels follow the first one."""
    labels: list[str] = []

    def bind(value: Any) -> Any:
        if isinstance(value, Slot) and value.ref.scope == "stages":
            ups: dict[int, Instance] = {}
            for variant in variants:
                for inst in by_variant[variant.id].get(value.ref.name, []):
                    ups.setdefault(id(inst), inst)
            if not labels:
                labels.extend(_item_label(inst) for inst in ups.values())
            return GatherSlot(value.ref, tuple(ups.values()))
        if isinstance(value, dict):
            return {k: bind(v) for k, v in value.items()}
        if isinstance(value, list):
            return [bind(v) for v in value]
        return value

    return bind(rendered), labels


def _item_label(inst: Instance) -> str:
    if inst.gathers:
        return inst.stage
    base = inst.variants[0].label
    return f"{base} · take {inst.take_label}" if inst.take_label else base


def _identity(value: Any) -> Any:
    """A hashable, order-independent form of bound parameters (for merging instances)."""
    if isinstance(value, GatherSlot):
        return ("$gather", value.ref.field, tuple(u.id for u in value.upstreams))
    if isinstance(value, Slot):
        if value.upstream is None:
            return ("$input", value.ref.name)
        return ("$instance", value.upstream.id, value.ref.field)
    if isinstance(value, Interp):
        return ("$interp", tuple(_identity(p) for p in value.parts))
    if isinstance(value, dict):
        return ("$dict", tuple(sorted((k, _identity(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("$list", tuple(_identity(v) for v in value))
    return (type(value).__name__, value)


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
    builder = _Builder(recipe)
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
    for vi, variant in enumerate(recipe.variants):  # every template error, before building
        context = {**recipe.vars, **dict(variant.values)}
        for name in builder.healthy(order):
            if name not in gathering:
                rendered_by[vi, name] = builder.render_stage(name, context)
    healthy = builder.healthy(order)

    instances: dict[tuple[Any, ...], Instance] = {}
    by_variant: dict[str, dict[str, list[Instance]]] = {v.id: {} for v in recipe.variants}

    for name in healthy:  # stage by stage: a gathering stage needs every variant's upstreams
        spec = stages[name]
        if name in gathering:
            params, labels = _gather(rendered_by[-1, name], by_variant, recipe.variants)
            upstream = [s.upstream for _, s in _walk_slots(params, ()) if s.upstream]
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
                    params = _bind(rendered, _binder(mine, t))
                    upstream = [s.upstream for _, s in _walk_slots(params, ()) if s.upstream]
                else:  # nothing to bind: the rendered parameters are shared as they are
                    params, upstream = rendered, []
                for needed in spec.needs:
                    upstream.extend(mine.get(needed, []))
                take = t if source == name else 0
                unique = list({id(u): u for u in upstream}.values())
                ident = (name, take, _identity(params), tuple(sorted(u.id for u in unique)))
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
