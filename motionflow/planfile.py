"""Plan files: a plan written for review, stamped with everything it relies on.

``motionflow plan RECIPE -o plan.json`` writes one; ``motionflow run RECIPE --plan plan.json``
reads it back (:func:`load_plan`) and holds the run to it (:mod:`motionflow.review`). See
docs/sweeps.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from motionflow.errors import UsageError
from motionflow.infile import UnreadableError, read_bounded
from motionflow.keys import canonical_json, digest_file
from motionflow.money import finite_usd
from motionflow.outfile import atomic_write_text
from motionflow.plan import Plan, PlannedInstance
from motionflow.providers.pricing import price_table
from motionflow.resolve import known_components
from motionflow.version import installed_version

if TYPE_CHECKING:
    from motionflow.budget import BudgetCheck

__all__ = [
    "MAX_PLAN_BYTES",
    "PLAN_FORMAT",
    "PLAN_VERSION",
    "load_plan",
    "plan_document",
    "var_flags",
    "write_plan",
]

PLAN_FORMAT = "motionflow-plan"
#: 2: ``--var`` flags as a mapping, the budget, and every instance's known components
#: (rendered prompt and parameters even while its key is unknown). Version 1 files are refused.
PLAN_VERSION = 2
#: Largest plan file read (64 MiB): a plan of a 10,000-variant sweep is a few megabytes.
MAX_PLAN_BYTES = 64 << 20


def _digest(body: dict[str, Any]) -> str:
    return "blake3:" + blake3.blake3(canonical_json(body).encode("utf-8")).hexdigest()


def var_flags(raw_vars: Sequence[str]) -> dict[str, str]:
    """``--var NAME=VALUE`` flags as ``{NAME: VALUE}`` (text as typed; a repeated name: last)."""
    flags: dict[str, str] = {}
    for text in raw_vars:
        name, _, value = text.partition("=")
        flags[name.strip()] = value
    return flags


def _entry(item: PlannedInstance, provider: str) -> dict[str, Any]:
    inst = item.instance
    components, pending = item.components, list[str]()
    if components is None and item.params is not None:  # waits for an earlier stage
        components, pending = known_components(inst, item.params, provider)
    return {
        "instance": inst.label,
        "stage": inst.stage,
        "variants": [v.id for v in inst.variants],
        "take": inst.take,
        "paid": inst.impl.paid,
        "reason": item.reason,
        "key": item.key,
        "estimated_usd": item.estimate.usd,
        "estimate_exact": item.estimate.exact,
        "components": components,
        "pending": pending,
    }


def plan_document(
    plan: Plan, raw_vars: Sequence[str] = (), budget: BudgetCheck | None = None
) -> dict[str, Any]:
    """The plan file's content: what would run, at which price, from which inputs.

    Every instance to run is listed with its key components: for a paid generation, the
    rendered prompt, mode, duration, orientation, sound and the digests of its references.
    Instances whose key is not known yet (they wait for an earlier stage) have ``key: null``
    and list the parameters they wait for in ``pending``; the rest of their components is
    recorded all the same.
    """
    table = price_table()
    recipe = plan.recipe
    provider = recipe.model.provider
    body: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "motionflow": installed_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "recipe": {
            "name": recipe.name,
            "path": recipe.display,
            "digest": digest_file(recipe.path),
            "vars": var_flags(raw_vars),
        },
        "provider": provider,
        "prices": {
            "model": table.model,
            "as_of": table.as_of,
            "per_second": dict(sorted(table.per_second.items())),
        },
        "budget": {
            "max_usd": budget.max_usd if budget is not None else None,
            "source": budget.source if budget is not None else None,
        },
        "inputs": {
            name: (artifact.digest if artifact is not None else None)
            for name, artifact in sorted(plan.inputs.items())
        },
        "estimated_usd": plan.estimated_usd,
        "estimate_exact": plan.exact,
        "to_run": [_entry(p, provider) for p in plan.to_run],
        "cached": sorted({p.key for p in plan.cached if p.key is not None}),
    }
    return {**body, "digest": _digest(body)}


def write_plan(path: Path, document: dict[str, Any]) -> None:
    """Write a plan file (atomically).

    Raises:
        UsageError: the file cannot be written.
    """
    from motionflow.outfile import output_kind

    if output_kind(path, "the plan file") == "discard":
        return
    try:
        atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        msg = f"cannot write the plan file {str(path)!r}: {exc}; choose a writable path with -o"
        raise UsageError(msg) from exc


_REWRITE = (
    "Write it again with `motionflow plan RECIPE -o FILE`, review it, then run with --plan FILE"
)


def _malformed(path: Path, why: str) -> UsageError:
    msg = f"the plan file {str(path)!r} is not usable: {why}. Nothing was run or spent. {_REWRITE}"
    return UsageError(msg)


def _check_money(path: Path, document: dict[str, Any]) -> None:
    """Every amount of dollars the plan holds is finite and >= 0 (a NaN passes any budget)."""
    where = f"the plan file {str(path)!r}"
    fix = f"Nothing was run or spent. {_REWRITE}"
    finite_usd(document.get("estimated_usd"), f"{where}: 'estimated_usd'", fix)
    for entry in document["to_run"]:
        name = f"{where}: 'estimated_usd' of {entry['instance']}"
        finite_usd(entry.get("estimated_usd"), name, fix)
    prices = document["prices"].get("per_second")
    if not isinstance(prices, dict):
        raise _malformed(path, "its 'prices' have no 'per_second' table")
    for mode, price in prices.items():
        finite_usd(price, f"{where}: the price of {mode!r}", fix)
    limit = document["budget"].get("max_usd")
    if limit is not None:
        finite_usd(limit, f"{where}: 'budget.max_usd'", fix)


def _read_plan(path: Path) -> bytes:
    """The bytes of a plan file: a regular file of at most :data:`MAX_PLAN_BYTES`, so that
    ``/dev/zero``, a FIFO or a huge file is refused instead of read forever."""
    try:
        return read_bounded(path, MAX_PLAN_BYTES)
    except UnreadableError as exc:
        raise _malformed(path, exc.reason) from exc


def load_plan(path: Path) -> dict[str, Any]:
    """Read and verify a plan file (its format, its fields, its amounts and its own digest).

    Raises:
        UsageError: the file is missing, unreadable, not a plan file, holds an amount that is
            not a finite number >= 0, or was edited by hand.
    """
    data = _read_plan(path)
    try:
        document = json.loads(data.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise _malformed(path, f"it is not JSON ({exc})") from exc
    except RecursionError as exc:
        raise _malformed(path, "its JSON nests too deep to be a plan") from exc
    if not isinstance(document, dict) or document.get("format") != PLAN_FORMAT:
        raise _malformed(path, f'it is not a motionflow plan (no "format": {PLAN_FORMAT!r})')
    if document.get("version") != PLAN_VERSION:
        raise _malformed(
            path,
            f"plan file version {document.get('version')!r}; this motionflow reads {PLAN_VERSION}",
        )
    expected = {
        "recipe": dict,
        "provider": str,
        "prices": dict,
        "budget": dict,
        "inputs": dict,
        "to_run": list,
        "cached": list,
        "digest": str,
    }
    for name, kind in expected.items():
        if not isinstance(document.get(name), kind):
            raise _malformed(path, f"the field {name!r} is missing or not a {kind.__name__}")
    if not isinstance(document["recipe"].get("vars"), dict):
        raise _malformed(path, "its 'recipe' has no 'vars' mapping")
    for entry in document["to_run"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("instance"), str):
            raise _malformed(path, "an entry of 'to_run' has no 'instance'")
    _check_money(path, document)  # before the digest: a NaN would fail it less clearly
    body = {k: v for k, v in document.items() if k != "digest"}
    try:
        digest = _digest(body)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _malformed(path, f"it holds values a plan cannot ({exc})") from exc
    if digest != document["digest"]:
        raise _malformed(path, "its digest does not match its content (it was edited)")
    return document
