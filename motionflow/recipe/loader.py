"""Loading a recipe file: YAML with positions, schema validation, --var overrides, variants."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from motionflow.errors import Diagnostic, RecipeError
from motionflow.infile import NOT_REGULAR, UnreadableError, read_bounded
from motionflow.limits import MAX_RECIPE_BYTES
from motionflow.project import find_project_root
from motionflow.recipe.matrix import Variant, expand_matrix, max_variants
from motionflow.recipe.schema import Budget, RecipeModel, RemoteInput, StageSpec
from motionflow.recipe.yamlpos import SourceMap, int_digits_problem, load_yaml

__all__ = ["MAX_RECIPE_BYTES", "Recipe", "load_recipe", "parse_var"]

#: Largest recipe file read (1 MiB): hand-written recipes are a few kilobytes.

_FIELDS: dict[str, list[str]] = {
    "recipe": [f.alias or n for n, f in RecipeModel.model_fields.items()],
    "stage": [f.alias or n for n, f in StageSpec.model_fields.items()],
    "budget": list(Budget.model_fields),
    "input": list(RemoteInput.model_fields),
}


@dataclass
class Recipe:
    """A validated recipe, ready to be planned.

    Attributes:
        path: absolute path of the recipe file.
        display: the path as the user wrote it, for messages.
        root: the project folder; recipe paths may not leave it unless allowed.
        model: the validated recipe.
        smap: positions of every key and value, for located errors.
        name: output folder name (``name:`` or the file stem).
        variants: the expanded matrix.
        vars: ``vars:`` with ``--var`` overrides applied.
        allow_outside_project: the user allowed input paths outside ``root``.
        problems: problems found while loading (only with ``keep_going``); graph building and
            planning add theirs and report all of them together.
        broken_stages: stages dropped because their own definition is invalid.
        broken_inputs: inputs dropped because their own definition is invalid.
    """

    path: Path
    display: str
    root: Path
    model: RecipeModel
    smap: SourceMap
    name: str
    variants: list[Variant]
    vars: dict[str, Any]
    allow_outside_project: bool = False
    problems: list[Diagnostic] = field(default_factory=list)
    broken_stages: set[str] = field(default_factory=set)
    broken_inputs: set[str] = field(default_factory=set)

    @property
    def out_dir(self) -> Path:
        """``<root>/out/<name>``, where results and receipts are written."""
        return self.root / "out" / self.name


def parse_var(text: str) -> tuple[str, Any]:
    """Parse a ``--var NAME=VALUE`` option; VALUE is read as a YAML scalar (8 -> int).

    Raises:
        ValueError: when there is no ``=`` or the name is empty.
    """
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        msg = f"--var {text!r} is not NAME=VALUE; write e.g. --var style='neon rooftop'"
        raise ValueError(msg)
    import yaml

    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
        if isinstance(value, int) and not isinstance(value, bool):
            str(value)  # 0x/0o/0b integers skip the digit limit when read, not when written
    except yaml.YAMLError:
        value = raw
    except ValueError as exc:  # an integer past Python's 4,300-digit conversion limit
        msg = (
            f"--var {name.strip()}: {int_digits_problem(exc)}; write a shorter number, or quote it"
        )
        raise ValueError(msg) from exc
    if isinstance(value, dict | list) or value is None:
        value = raw
    return name.strip(), value


def _read_recipe(file: Path, display: str) -> str:
    """The text of a recipe file, refusing anything but a regular file of at most
    :data:`MAX_RECIPE_BYTES` (``/dev/zero`` never ends, a FIFO blocks, a huge file fills memory).

    Raises:
        RecipeError: the file is missing, not a regular file, too large, or not UTF-8 text.
    """
    try:
        data = read_bounded(file, MAX_RECIPE_BYTES)
    except UnreadableError as exc:
        if exc.missing:
            msg = f"no recipe file at {display!r}; check the path (recipes usually end in .yaml)"
        else:
            fix = (
                "give the path of a .yaml file"
                if exc.reason == NOT_REGULAR
                else ("a recipe is a short UTF-8 YAML text file: check the path")
            )
            msg = f"cannot read the recipe {display!r}: {exc.reason}; {fix}"
        raise RecipeError([Diagnostic(msg, display)]) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"cannot read the recipe {display!r}: {exc}; it must be a UTF-8 YAML text file"
        raise RecipeError([Diagnostic(msg, display)]) from exc


def _allowed_fields(parent: tuple[Any, ...]) -> list[str]:
    if not parent:
        return _FIELDS["recipe"]
    if parent[0] == "stages" and len(parent) == 2:
        return _FIELDS["stage"]
    if parent == ("budget",):
        return _FIELDS["budget"]
    if parent[0] == "inputs" and len(parent) == 2:
        return _FIELDS["input"]
    return []


def _schema_diagnostics(exc: ValidationError, data: Any, smap: SourceMap) -> list[Diagnostic]:
    problems: list[Diagnostic] = []
    seen: set[tuple[Any, ...]] = set()
    extras: dict[tuple[Any, ...], list[str]] = {}
    for err in exc.errors():
        if err["type"] == "extra_forbidden":
            extras.setdefault(tuple(err["loc"][:-1]), []).append(str(err["loc"][-1]))
    for err in exc.errors():
        loc = tuple(err["loc"])
        # inputs are `str | RemoteInput`: keep only the branch that matches what was written
        if len(loc) >= 3 and loc[0] == "inputs":
            written = data.get("inputs", {}).get(loc[1]) if isinstance(data, dict) else None
            if isinstance(written, str) == (loc[2] == "RemoteInput"):  # str: "function-after[..]"
                continue
            loc = loc[:2] + loc[3:]
        at_key = False
        if loc and loc[-1] == "[key]":
            loc, at_key = loc[:-1], True
        if (loc, err["type"]) in seen:
            continue
        seen.add((loc, err["type"]))
        dotted = ".".join(str(p) for p in loc) or "recipe"
        if err["type"] == "extra_forbidden":
            name = str(loc[-1])
            allowed = _allowed_fields(loc[:-1])
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = f"unknown key {name!r}; {hint}allowed here: {', '.join(allowed)}"
            problems.append(smap.diagnostic(loc, msg, at_key=True))
        elif err["type"] == "missing":
            msg = f"missing required key {str(loc[-1])!r}"
            parent = loc[:-1]
            if difflib.get_close_matches(str(loc[-1]), extras.get(parent, []), n=1):
                continue  # a misspelt key is reported once, as unknown with "did you mean"
            if not parent:
                msg += {
                    "version": "; start the recipe with `version: 1`",
                    "stages": "; a recipe needs a `stages:` mapping",
                }.get(str(loc[-1]), "")
            if len(parent) == 2 and parent[0] == "stages":
                msg += f" in stage {parent[1]!r}; e.g. `uses: prompt`"
            problems.append(smap.diagnostic(parent, msg))
        else:
            got = err.get("input")
            # a validator of ours names the value itself
            ours = err["type"] == "value_error"
            shown = f" (got {got!r})" if not isinstance(got, dict | list) and not ours else ""
            if at_key:
                msg = f"{dotted}: the name {loc[-1]!r} is not allowed: use letters, digits and _"
            else:
                msg = f"{dotted}: {err['msg'].removeprefix('Value error, ')}{shown}"
            problems.append(smap.diagnostic(loc, msg, at_key=at_key))
    return problems


def _repair(
    data: dict[str, Any], exc: ValidationError
) -> tuple[dict[str, Any], set[str], set[str]]:
    """Drop what failed validation (whole stages and inputs, optional sections) so the rest
    of the recipe can still be checked in the same pass; return the names of the stages and
    inputs dropped."""
    repaired = dict(data)
    stages = dict(data.get("stages") or {}) if isinstance(data.get("stages"), dict) else None
    broken: set[str] = set()
    inputs = dict(data["inputs"]) if isinstance(data.get("inputs"), dict) else None
    broken_inputs: set[str] = set()
    for err in exc.errors():
        loc = err["loc"]
        if not loc:
            continue
        top = str(loc[0])
        if top == "stages" and stages is not None and len(loc) > 1:
            broken.add(str(loc[1]))
            stages.pop(str(loc[1]), None)
        elif top == "inputs" and isinstance(inputs, dict) and len(loc) > 1:
            broken_inputs.add(str(loc[1]))
            inputs.pop(str(loc[1]), None)
        elif top == "version":
            repaired["version"] = 1
        elif top not in ("stages",):
            repaired.pop(top, None)
    if stages is not None:
        repaired["stages"] = stages
    if inputs is not None and "inputs" in repaired:
        repaired["inputs"] = inputs
    return repaired, broken, broken_inputs


def load_recipe(
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    allow_outside_project: bool = False,
    keep_going: bool = False,
) -> Recipe:
    """Read, validate and expand a recipe file.

    Args:
        path: the recipe file.
        overrides: ``--var`` values; each must name an existing var.
        allow_outside_project: allow input paths outside the project folder.
        keep_going: return a recipe carrying its problems (in :attr:`Recipe.problems`) when
            the rest of it can still be checked, so that later checks report theirs too.

    Raises:
        RecipeError: every problem found, each located at file:line:column.
    """
    display = str(path)
    file = Path(path)
    text = _read_recipe(file, display)
    data, smap = load_yaml(text, display)
    if not isinstance(data, dict):
        msg = "a recipe is a YAML mapping (version:, stages:, ...); this file holds "
        msg += "nothing" if data is None else f"a {type(data).__name__}"
        raise RecipeError([smap.diagnostic((), msg)])
    problems: list[Diagnostic] = []
    broken: set[str] = set()
    broken_inputs: set[str] = set()
    try:
        model = RecipeModel.model_validate(data)
    except ValidationError as exc:
        problems = _schema_diagnostics(exc, data, smap)
        if not keep_going:
            raise RecipeError(problems) from exc
        repaired, broken, broken_inputs = _repair(data, exc)
        try:
            model = RecipeModel.model_validate(repaired)
        except ValidationError:
            raise RecipeError(problems) from exc

    variables = dict(model.vars)
    for name, value in (overrides or {}).items():
        if name not in variables:
            close = difflib.get_close_matches(name, list(variables), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(variables) or "none"
            msg = f"--var {name}: the recipe has no var {name!r}; {hint}vars: {known}"
            problems.append(Diagnostic(msg, display))
        else:
            variables[name] = value
    variants = expand_matrix(model.matrix, smap, problems, limit=max_variants())
    axes = {k for v in variants for k, _ in v.values}
    for clash in sorted(axes & set(variables)):
        msg = f"{clash!r} is both a var and a matrix axis; rename one of them"
        problems.append(smap.diagnostic(("vars", clash), msg, at_key=True))
    if problems and not keep_going:
        raise RecipeError(problems)
    resolved = file.resolve()
    return Recipe(
        path=resolved,
        display=display,
        root=find_project_root(resolved.parent),
        model=model,
        smap=smap,
        name=model.name or file.stem,
        variants=variants,
        vars=variables,
        allow_outside_project=allow_outside_project,
        problems=problems,
        broken_stages=broken,
        broken_inputs=broken_inputs,
    )
