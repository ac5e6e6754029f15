"""Parameter templates: a stage's ``with:`` compiled once, references as placeholders."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from motionflow.graph.instance import ParamPath
from motionflow.recipe.refs import Ref, RefSyntaxError, find_refs
from motionflow.recipe.templating import has_jinja, template_names

__all__ = ["PLACEHOLDER", "StrTemplate", "collect_names", "compile_params", "value_at"]

#: A reference's place in a compiled string: NUL, its index in :attr:`StrTemplate.refs`, NUL.
PLACEHOLDER = re.compile("\x00(\\d+)\x00")


@dataclass(frozen=True)
class StrTemplate:
    """A string parameter split into Jinja source (references as placeholders) and refs."""

    source: str
    refs: tuple[Ref, ...]
    jinja: bool


def compile_params(
    value: Any, path: ParamPath, refs_out: list[tuple[Ref, ParamPath, int]], errors: list[Any]
) -> Any:
    """``value`` with every string holding a reference or Jinja made a :class:`StrTemplate`.

    Appends ``(ref, path, offset)`` of each reference to ``refs_out`` and ``(path,
    RefSyntaxError)`` of each malformed one to ``errors``.
    """
    if isinstance(value, dict):
        return {k: compile_params(v, (*path, k), refs_out, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_params(v, (*path, i), refs_out, errors) for i, v in enumerate(value)]
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
    return StrTemplate(source, tuple(refs), has_jinja(source))


def value_at(value: Any, path: ParamPath) -> Any:
    """The item at ``path`` inside nested mappings and lists."""
    for part in path:
        value = value[part]
    return value


def collect_names(value: Any, found: set[str]) -> None:
    """Add the variable names the Jinja templates in ``value`` read to ``found``."""
    if isinstance(value, StrTemplate) and value.jinja:
        found.update(template_names(value.source))
    elif isinstance(value, dict):
        for item in value.values():
            collect_names(item, found)
    elif isinstance(value, list):
        for item in value:
            collect_names(item, found)
