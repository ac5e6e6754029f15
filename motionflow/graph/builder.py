"""The graph builder: static checks of a recipe's stages, their order, per-variant rendering."""

from __future__ import annotations

import difflib
from typing import Any

from motionflow.errors import Diagnostic
from motionflow.graph.inputs import LocalInput, check_inputs
from motionflow.graph.instance import Interp, ParamPath, Slot
from motionflow.graph.order import stage_order
from motionflow.graph.template import (
    PLACEHOLDER,
    StrTemplate,
    collect_names,
    compile_params,
    value_at,
)
from motionflow.recipe.loader import Recipe
from motionflow.recipe.refs import REF_PATTERN, Ref, RefSyntaxError
from motionflow.recipe.schema import RemoteInput
from motionflow.recipe.templating import TemplateProblem, render_template
from motionflow.stages.base import Stage
from motionflow.stages.registry import UnknownStageKind, get_stage

__all__ = ["Builder"]

_MISSING = object()


class Builder:
    """The state of one graph build: the recipe's stages checked, ordered and rendered.

    Problems are collected (each once) rather than raised, and a stage with a problem is
    marked broken, so that every other stage is still checked in the same pass.
    """

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
        resolved, self.bad_inputs = check_inputs(self.recipe, self.problem)
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
            self.templates[name] = compile_params(spec.with_, ("with",), refs, errors)
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
                whole = REF_PATTERN.fullmatch(str(value_at(spec.with_, path[1:])).strip())
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
        self.deps = {
            name: sorted(
                {r.name for r, _, _ in self.refs.get(name, []) if r.scope == "stages"}
                | set(stages[name].needs)
            )
            for name in stages
        }
        order, cycles = stage_order(self.deps)
        for cycle in cycles:
            self.broken.update(cycle)
            self.problem(
                ("stages", cycle[0]),
                "stages form a cycle: " + " -> ".join(cycle) + "; a stage cannot depend"
                " (through ${stages...} or needs:) on a stage that depends on it",
                at_key=True,
            )
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
            collect_names(self.templates[stage], found)
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
        if not isinstance(value, StrTemplate):
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
        for i, piece in enumerate(PLACEHOLDER.split(text)):
            if i % 2:
                parts.append(Slot(value.refs[int(piece)]))
            elif piece:
                parts.append(piece)
        if len(parts) == 1 and isinstance(parts[0], Slot):
            return parts[0]
        return Interp(tuple(parts))
