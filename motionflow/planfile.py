"""Plan files: a reviewed plan, stamped with the digests it relies on, that ``run`` holds to.

``motionflow plan RECIPE -o plan.json`` writes one; ``motionflow run RECIPE --plan plan.json``
plans again, compares, and refuses (exit 2, before anything runs) when an input, a parameter,
the provider or a price differs from what was reviewed. See docs/sweeps.md.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3

from motionflow.errors import UsageError
from motionflow.keys import canonical_json
from motionflow.manifest import atomic_write_text
from motionflow.plan import Plan, describe_changes
from motionflow.providers.pricing import price_table

__all__ = [
    "PLAN_FORMAT",
    "PLAN_VERSION",
    "check_plan",
    "drift",
    "load_plan",
    "plan_document",
    "write_plan",
]

PLAN_FORMAT = "motionflow-plan"
PLAN_VERSION = 1
#: Estimates are rounded to cents; a smaller difference is not a price change.
_CENT = 0.005


def _digest(body: dict[str, Any]) -> str:
    return "blake3:" + blake3.blake3(canonical_json(body).encode("utf-8")).hexdigest()


def _short(digest: str | None) -> str:
    return "(not downloaded)" if digest is None else digest[:15] + "…"


def plan_document(plan: Plan, raw_vars: list[str] | None = None) -> dict[str, Any]:
    """The plan file's content: what would run, at which price, from which inputs.

    Instances whose key is not known yet (they wait for an earlier stage) are listed with
    ``key: null`` and identified by their label.
    """
    from motionflow import __version__

    table = price_table()
    recipe = plan.recipe
    body: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "motionflow": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "recipe": {
            "name": recipe.name,
            "path": recipe.display,
            "digest": "blake3:" + blake3.blake3(recipe.path.read_bytes()).hexdigest(),
            "vars": list(raw_vars or []),
        },
        "provider": recipe.model.provider,
        "prices": {
            "model": table.model,
            "as_of": table.as_of,
            "per_second": dict(sorted(table.per_second.items())),
        },
        "inputs": {
            name: (artifact.digest if artifact is not None else None)
            for name, artifact in sorted(plan.inputs.items())
        },
        "estimated_usd": plan.estimated_usd,
        "estimate_exact": plan.exact,
        "to_run": [
            {
                "instance": p.instance.label,
                "stage": p.instance.stage,
                "reason": p.reason,
                "key": p.key,
                "estimated_usd": p.estimate.usd,
                "estimate_exact": p.estimate.exact,
                "components": p.components,
            }
            for p in plan.to_run
        ],
        "cached": sorted({p.key for p in plan.cached if p.key is not None}),
    }
    return {**body, "digest": _digest(body)}


def write_plan(path: Path, document: dict[str, Any]) -> None:
    """Write a plan file (atomically).

    Raises:
        UsageError: the file cannot be written.
    """
    try:
        atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    except OSError as exc:
        msg = f"cannot write the plan file {str(path)!r}: {exc}; choose a writable path with -o"
        raise UsageError(msg) from exc


def _malformed(path: Path, why: str) -> UsageError:
    msg = (
        f"the plan file {str(path)!r} is not usable: {why}. Nothing was run or spent. "
        "Write it again with "
        "`motionflow plan RECIPE -o FILE`, review it, then run with --plan FILE"
    )
    return UsageError(msg)


def load_plan(path: Path) -> dict[str, Any]:
    """Read and verify a plan file (its format, its fields, and its own digest).

    Raises:
        UsageError: the file is missing, unreadable, not a plan file, or edited by hand.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _malformed(path, f"cannot read it ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise _malformed(path, f"it is not JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != PLAN_FORMAT:
        raise _malformed(path, f'it is not a motionflow plan (no "format": {PLAN_FORMAT!r})')
    if document.get("version") != PLAN_VERSION:
        raise _malformed(
            path, f"plan file version {document.get('version')!r}; this motionflow reads 1"
        )
    expected = {
        "recipe": dict,
        "provider": str,
        "prices": dict,
        "inputs": dict,
        "to_run": list,
        "cached": list,
        "digest": str,
    }
    for name, kind in expected.items():
        if not isinstance(document.get(name), kind):
            raise _malformed(path, f"the field {name!r} is missing or not a {kind.__name__}")
    body = {k: v for k, v in document.items() if k != "digest"}
    try:
        digest = _digest(body)
    except (TypeError, ValueError) as exc:
        raise _malformed(path, f"it holds values a plan cannot ({exc})") from exc
    if digest != document["digest"]:
        raise _malformed(path, "its digest does not match its content (it was edited)")
    for entry in document["to_run"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("instance"), str):
            raise _malformed(path, "an entry of 'to_run' has no 'instance'")
    return document


def _price_drift(recorded: dict[str, Any]) -> list[str]:
    table = price_table()
    changes: list[str] = []
    if recorded.get("model") != table.model:
        changes.append(f"model {recorded.get('model')} -> {table.model}")
    if recorded.get("as_of") != table.as_of:
        changes.append(f"as of {recorded.get('as_of')} -> {table.as_of}")
    old = recorded.get("per_second") or {}
    for mode in sorted(set(old) | set(table.per_second)):
        before, after = old.get(mode), table.per_second.get(mode)
        if before != after:
            changes.append(f"{mode} ${before}/s -> ${after}/s")
    return [f"the price table changed: {'; '.join(changes)}"] if changes else []


def drift(document: dict[str, Any], plan: Plan) -> list[str]:
    """Everything in ``plan`` (made now) that differs from the reviewed ``document``.

    An instance the reviewed plan runs may now be cached, or gone: running less than was
    reviewed is fine. Anything that would run but was not reviewed, or would cost more, is
    drift; so is any change of input digest, provider or price.
    """
    found: list[str] = []
    recipe = document["recipe"]
    if recipe.get("name") != plan.recipe.name:
        found.append(f"the plan is for recipe {recipe.get('name')!r}, not {plan.recipe.name!r}")
    if document["provider"] != plan.recipe.model.provider:
        found.append(f"provider {document['provider']} -> {plan.recipe.model.provider}")
    found.extend(_price_drift(document["prices"]))
    recorded = document["inputs"]
    for name in sorted(set(recorded) | set(plan.inputs)):
        now = plan.inputs.get(name)
        if name not in plan.inputs:
            found.append(f"input {name!r} was removed from the recipe")
        elif name not in recorded:
            found.append(f"input {name!r} is new (not in the plan)")
        elif now is not None and now.digest != recorded[name]:
            found.append(
                f"input {name!r} changed: {_short(recorded[name])} -> {_short(now.digest)}"
            )
    by_key = {e["key"]: e for e in document["to_run"] if e.get("key")}
    by_label = {e["instance"]: e for e in document["to_run"]}
    cached = set(document["cached"])
    for item in plan.to_run:
        label = item.instance.label
        entry = by_key.get(item.key) if item.key else None
        if entry is None:
            entry = by_label.get(label)
            if entry is None:
                why = (
                    "was cached when the plan was made, but its result is no longer in this cache"
                    if item.key in cached
                    else f"would run ({item.reason}) but is not in the plan"
                )
                found.append(f"{label} {why}")
                continue
            if entry.get("key") and entry["key"] != item.key:
                old = entry.get("components")
                changes = (
                    describe_changes(old, item.components)
                    if isinstance(old, dict) and item.components is not None
                    else []
                )
                detail = ", ".join(changes) or f"key {entry['key'][:12]}… -> {item.key}"
                found.append(f"{label} changed since the plan: {detail}")
                continue
        planned_usd = float(entry.get("estimated_usd") or 0.0)
        if item.estimate.usd > planned_usd + _CENT:
            found.append(
                f"{label} now costs ${item.estimate.usd:.2f}, the plan says ${planned_usd:.2f}"
            )
    return found


def check_plan(document: dict[str, Any], plan: Plan, path: Path | None = None) -> None:
    """Refuse to run when ``plan`` drifted from the reviewed ``document``.

    Raises:
        UsageError: naming every drift; nothing was run or spent.
    """
    found = drift(document, plan)
    if not found:
        return
    where = f" {str(path)!r}" if path is not None else ""
    shown = found[:20] + ([f"... and {len(found) - 20} more"] if len(found) > 20 else [])
    msg = (
        f"the recipe drifted from the reviewed plan{where}:\n  - "
        + "\n  - ".join(shown)
        + "\nNothing was run or spent. Review the changes with `motionflow why RECIPE`, write "
        "a new plan with `motionflow plan RECIPE -o FILE`, or run without --plan"
    )
    raise UsageError(msg)
