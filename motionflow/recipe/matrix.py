"""Expanding a recipe's matrix into variants with stable, readable ids."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import blake3

from motionflow.errors import Diagnostic
from motionflow.recipe.yamlpos import SourceMap

__all__ = ["Variant", "expand_matrix", "slugify"]

_MAX_ID = 60
_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Variant:
    """One cell of the matrix.

    Attributes:
        id: stable, readable id (slugs of the values), used for folders under out/.
        values: the matrix values of this cell, in axis order.
    """

    id: str
    values: tuple[tuple[str, Any], ...]

    @property
    def label(self) -> str:
        """``outfit=red bomber jacket, mode=std``: for tables and video labels."""
        return ", ".join(f"{k}={v}" for k, v in self.values) or "default"


def slugify(value: Any) -> str:
    """Return a lowercase, filesystem-safe slug of a matrix value."""
    text = str(value).lower()
    text = re.sub(r"[^a-z0-9.]+", "-", text).strip("-.")
    return text or "x"


def _short_hash(values: tuple[tuple[str, Any], ...]) -> str:
    return blake3.blake3(repr(values).encode()).hexdigest()[:8]


def _variant_id(values: tuple[tuple[str, Any], ...]) -> str:
    if not values:
        return "default"
    text = "_".join(slugify(v) for _, v in values)
    if len(text) > _MAX_ID:
        text = text[: _MAX_ID - 9].rstrip("-_.") + "-" + _short_hash(values)
    return text


def _matches(combo: Mapping[str, Any], pattern: Mapping[str, Any]) -> bool:
    return all(k in combo and combo[k] == v for k, v in pattern.items())


def expand_matrix(
    matrix: Mapping[str, Any], smap: SourceMap, problems: list[Diagnostic]
) -> list[Variant]:
    """Expand axes, apply ``exclude`` then ``include`` (GitHub Actions rules), and name each cell.

    ``include`` entries extend every combination they can be added to without overwriting an
    axis value; an entry that extends none becomes a combination of its own.
    """
    axes: dict[str, list[Any]] = {}
    for name, values in matrix.items():
        if name in ("include", "exclude"):
            continue
        where = ("matrix", name)
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            problems.append(
                smap.diagnostic(
                    where,
                    f"matrix axis {name!r} is not a valid name: use letters, digits and _",
                    at_key=True,
                )
            )
            continue
        if not isinstance(values, list) or not values:
            problems.append(
                smap.diagnostic(
                    where, f"matrix axis {name!r} must be a non-empty list, e.g. {name}: [a, b]"
                )
            )
            continue
        bad = [i for i, v in enumerate(values) if not isinstance(v, _SCALARS)]
        for i in bad:
            problems.append(
                smap.diagnostic(
                    (*where, i), f"matrix values must be strings, numbers or booleans ({name}[{i}])"
                )
            )
        dupes = {str(v) for v in values if values.count(v) > 1}
        if dupes:
            problems.append(
                smap.diagnostic(where, f"matrix axis {name!r} repeats {sorted(dupes)}; remove them")
            )
        axes[name] = list(values)

    def entries(kind: str) -> list[dict[str, Any]]:
        raw = matrix.get(kind, [])
        if not isinstance(raw, list) or not all(isinstance(e, dict) and e for e in raw):
            problems.append(
                smap.diagnostic(
                    ("matrix", kind),
                    f"matrix.{kind} must be a list of mappings like {{axis: value}}",
                )
            )
            return []
        return raw

    excludes, includes = entries("exclude"), entries("include")
    for i, pattern in enumerate(excludes):
        unknown = [k for k in pattern if k not in axes]
        if unknown:
            problems.append(
                smap.diagnostic(
                    ("matrix", "exclude", i),
                    f"exclude names {unknown}, which are not matrix axes ({sorted(axes)})",
                )
            )
    names = list(axes)
    combos: list[dict[str, Any]] = [
        dict(zip(names, cell, strict=True)) for cell in itertools.product(*axes.values())
    ]
    combos = [c for c in combos if not any(_matches(c, p) for p in excludes)]
    base_count = len(combos)
    for pattern in includes:
        extended = False
        for combo in combos[:base_count]:
            if all(combo.get(k, v) == v for k, v in pattern.items() if k in axes):
                combo.update(pattern)
                extended = True
        if not extended:
            combos.append(dict(pattern))
    if not combos and (axes or includes):
        problems.append(
            smap.diagnostic(("matrix",), "the matrix is empty after exclude: nothing would run")
        )
    if not combos:
        return [Variant("default", ())]

    variants: list[Variant] = []
    seen: dict[str, int] = {}
    for combo in combos:
        values = tuple(combo.items())
        vid = _variant_id(values)
        if vid in seen:
            vid = f"{vid}-{_short_hash(values)}"
        seen[vid] = 1
        variants.append(Variant(vid, values))
    return variants
