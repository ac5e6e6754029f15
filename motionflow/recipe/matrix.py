"""Expanding a recipe's matrix into variants with stable, readable ids."""

from __future__ import annotations

import collections
import itertools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import blake3

from motionflow.errors import Diagnostic, UsageError
from motionflow.recipe.yamlpos import SourceMap

__all__ = [
    "DEFAULT_MAX_VARIANTS",
    "MAX_VARIANTS_ENV",
    "Variant",
    "expand_matrix",
    "max_variants",
    "slugify",
]

#: Most variants a matrix may make unless :data:`MAX_VARIANTS_ENV` says otherwise: far more than
#: anyone reviews, far fewer than what exhausts memory (10 axes of 10 values make 10^10).
DEFAULT_MAX_VARIANTS = 10_000
MAX_VARIANTS_ENV = "MOTIONFLOW_MAX_VARIANTS"

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


def max_variants(environ: Mapping[str, str] | None = None) -> int:
    """The variant cap: ``MOTIONFLOW_MAX_VARIANTS`` if set, else :data:`DEFAULT_MAX_VARIANTS`.

    Raises:
        UsageError: the variable is set to something other than a whole number >= 1.
    """
    raw = (os.environ if environ is None else environ).get(MAX_VARIANTS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_VARIANTS
    if not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        msg = (
            f"{MAX_VARIANTS_ENV}={raw[:40]!r} is not a whole number >= 1; set it to the most"
            f" variants a matrix may make (e.g. {MAX_VARIANTS_ENV}=50000) or unset it for the"
            f" default, {DEFAULT_MAX_VARIANTS:,}"
        )
        raise UsageError(msg)
    return int(raw)


def expand_matrix(
    matrix: Mapping[str, Any],
    smap: SourceMap,
    problems: list[Diagnostic],
    *,
    limit: int = DEFAULT_MAX_VARIANTS,
) -> list[Variant]:
    """Expand axes, apply ``exclude`` then ``include`` (GitHub Actions rules), and name each cell.

    ``include`` entries extend every combination they can be added to without overwriting an
    axis value; an entry that extends none becomes a combination of its own.

    Args:
        matrix: the recipe's ``matrix:``.
        smap: positions, for located problems.
        problems: where problems are appended.
        limit: the most variants the matrix may make (see :func:`max_variants`); counted
            before expanding, so a huge matrix is refused without being built.
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
        # One pass (an axis may hold 100,000 values); unhashable values were reported above.
        counts = collections.Counter(v for v in values if isinstance(v, _SCALARS))
        dupes = {str(v) for v, n in counts.items() if n > 1}
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
    would_make = math.prod(len(v) for v in axes.values()) + len(includes)
    if would_make > limit:
        made = " x ".join(f"{len(v)} {k}" for k, v in axes.items()) or "no axes"
        if includes:
            made += f", plus {len(includes)} include entries"
        msg = (
            f"this matrix would make {would_make:,} variants ({made}), more than the limit of"
            f" {limit:,}; remove axes or values, or raise the limit with the environment"
            f" variable {MAX_VARIANTS_ENV}={would_make}"
        )
        problems.append(smap.diagnostic(("matrix",), msg, at_key=True))
        first = tuple((name, values[0]) for name, values in axes.items())
        return [Variant(_variant_id(first), first)]  # one cell: the rest is still checked
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
