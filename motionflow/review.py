"""Holding a run to a reviewed plan file: what drifted, before anything runs and after.

``run --plan`` plans again and compares with the plan file (:func:`check_plan`): a ``--var``,
an input, a reviewed prompt or parameter, the set of paid generations, the provider or a price
that differs is refused (exit 2) before anything runs. A generation whose key is only known
once an earlier stage has made its media is checked again at that moment, before it is
submitted (:class:`Approval`, the executor's ``approve`` hook).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from motionflow.errors import UsageError
from motionflow.keys import canonical_json, digest_file, instance_key
from motionflow.plan import Plan, PlannedInstance, describe_changes
from motionflow.planfile import var_flags
from motionflow.providers.pricing import price_table
from motionflow.resolve import key_components, known_components

if TYPE_CHECKING:
    from motionflow.graph import Instance

__all__ = ["Approval", "check_plan", "drift"]

#: Estimates are rounded to cents; a smaller difference is not a price change.
_CENT = 0.005
_MISSING = object()


def _short_digest(digest: str | None) -> str:
    return "(not downloaded)" if digest is None else digest[:15] + "…"


def _identity(instance: Instance) -> str:
    """What matches an instance across plans: its stage, variants and take (not its label,
    which two instances shared by the same number of variants have in common)."""
    return canonical_json([instance.stage, [v.id for v in instance.variants], instance.take])


def _entry_identity(entry: Mapping[str, Any]) -> str:
    return canonical_json([entry.get("stage"), entry.get("variants"), entry.get("take")])


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


def _var_drift(recorded: Mapping[str, Any], raw_vars: Sequence[str]) -> list[str]:
    now = var_flags(raw_vars)
    found: list[str] = []
    for name in sorted(set(recorded) | set(now)):
        before, after = recorded.get(name), now.get(name)
        if before == after:
            continue
        if after is None:
            found.append(f"--var {name}={before!r} was given to the plan, not to this run")
        elif before is None:
            found.append(f"--var {name}={after!r} is given to this run, not to the plan")
        else:
            found.append(f"--var {name}: {before!r} in the plan, {after!r} now")
    return found


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "(none)"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _excerpt(before: str, after: str, context: int = 20, most: int = 120) -> str:
    """The part of two texts that differs, with a little context: ``'…a rooftop.' -> …``."""
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1

    def cut(text: str) -> str:
        low, high = max(0, start - context), min(len(text), len(text) - end + context)
        if low:  # whole words
            low = text.rfind(" ", 0, low) + 1
        if high < len(text):
            high = len(text) if (space := text.find(" ", high)) < 0 else space
        middle = text[low:high]
        if len(middle) > most:
            middle = middle[:most] + "…"
        return repr(("…" if low else "") + middle + ("…" if high < len(text) else ""))

    return f"{cut(before)} -> {cut(after)}"


def _param_change(name: str, before: Any, after: Any) -> str:
    files = [v for v in (before, after) if isinstance(v, dict) and "$file" in v]
    if files:
        old = before.get("$file") if isinstance(before, dict) else None
        new = after.get("$file") if isinstance(after, dict) else None
        return f"input {name!r} changed: {_short_digest(old)} -> {_short_digest(new)}"
    if isinstance(before, str) and isinstance(after, str) and name in ("prompt", "template"):
        return f"{name}: {_excerpt(before, after)}"
    return f"{name}: {_shown(before)} -> {_shown(after)}"


def _component_changes(
    old: Mapping[str, Any],
    old_pending: Sequence[str],
    new: Mapping[str, Any],
    new_pending: Sequence[str],
) -> list[str]:
    """What differs between reviewed and current (possibly partial) key components.

    Parameters that wait for an earlier stage on either side are not compared here: they are
    checked when the key becomes known.
    """
    parts = ("kind", "kind_version", "take", "labels")
    shape_old = {k: old.get(k) for k in parts}
    shape_new = {k: new.get(k) for k in parts}
    if "env" in old and "env" in new:
        shape_old["env"], shape_new["env"] = old["env"], new["env"]
    changes = describe_changes(shape_old, shape_new)
    waiting = set(old_pending) | set(new_pending)
    old_params, new_params = old.get("params") or {}, new.get("params") or {}
    for name in sorted((set(old_params) | set(new_params)) - waiting):
        before, after = old_params.get(name, _MISSING), new_params.get(name, _MISSING)
        if before != after:
            changes.append(_param_change(name, before, after))
    return changes


def _reviewed_changes(entry: Mapping[str, Any], item: PlannedInstance, provider: str) -> list[str]:
    old = entry.get("components")
    if not isinstance(old, dict):
        return []
    if item.components is not None:
        new, pending = item.components, list[str]()
    elif item.params is not None:
        new, pending = known_components(item.instance, item.params, provider)
    else:
        return []
    return _component_changes(old, entry.get("pending") or [], new, pending)


def drift(document: dict[str, Any], plan: Plan, raw_vars: Sequence[str] = ()) -> list[str]:
    """Everything in ``plan`` (made now, with ``raw_vars``) that differs from the reviewed
    ``document``.

    An instance the reviewed plan runs may now be cached: running less than was reviewed is
    fine. A ``--var`` that differs, anything that would run but was not reviewed, a reviewed
    prompt or parameter that changed (even while the key is unknown), a paid generation that
    left the recipe, or one that would cost more is drift; so is any change of input digest,
    provider or price.
    """
    recipe = document["recipe"]
    found = _var_drift(recipe["vars"], raw_vars)
    if recipe.get("name") != plan.recipe.name:
        found.append(f"the plan is for recipe {recipe.get('name')!r}, not {plan.recipe.name!r}")
    provider = plan.recipe.model.provider
    if document["provider"] != provider:
        found.append(f"provider {document['provider']} -> {provider}")
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
                f"input {name!r} changed: {_short_digest(recorded[name])} -> "
                f"{_short_digest(now.digest)}"
            )
    entries: list[dict[str, Any]] = document["to_run"]
    by_key = {e["key"]: e for e in entries if e.get("key")}
    by_identity = {_entry_identity(e): e for e in entries}
    cached = set(document["cached"])
    for item in plan.to_run:
        label = item.instance.label
        entry = by_key.get(item.key) if item.key else None
        if entry is None:
            entry = by_identity.get(_identity(item.instance))
            if entry is None:
                why = (
                    "was cached when the plan was made, but its result is no longer in this cache"
                    if item.key in cached
                    else f"would run ({item.reason}) but is not in the plan"
                )
                found.append(f"{label} {why}")
                continue
            changes = _reviewed_changes(entry, item, provider)
            if not changes and entry.get("key") and item.key and entry["key"] != item.key:
                changes = [f"key {entry['key'][:12]}… -> {item.key[:12]}…"]
            if changes:
                found.append(f"{label} changed since the plan: {'; '.join(changes)}")
                continue
        planned_usd = float(entry.get("estimated_usd") or 0.0)
        if item.estimate.usd > planned_usd + _CENT:
            found.append(
                f"{label} now costs ${item.estimate.usd:.2f}, the plan says ${planned_usd:.2f}"
            )
    found.extend(_removed_generations(entries, plan))
    digest = digest_file(plan.recipe.path)
    if found and recipe.get("digest") != digest:
        found.append(
            f"(the recipe file changed since the plan: {_short_digest(recipe.get('digest'))} "
            f"-> {_short_digest(digest)})"
        )
    return found


def _removed_generations(entries: list[dict[str, Any]], plan: Plan) -> list[str]:
    """Paid generations the plan runs that are no longer instances of the recipe at all."""
    keys = {p.key for p in plan.items if p.key}
    identities = {_identity(p.instance) for p in plan.items}
    return [
        f"{e['instance']} (a paid generation in the plan, ${float(e['estimated_usd']):.2f}) is "
        "no longer in the recipe"
        for e in entries
        if e.get("paid") and e.get("key") not in keys and _entry_identity(e) not in identities
    ]


def check_plan(
    document: dict[str, Any],
    plan: Plan,
    path: Path | None = None,
    *,
    raw_vars: Sequence[str] = (),
) -> None:
    """Refuse to run when ``plan`` (made with ``raw_vars``) drifted from the reviewed
    ``document``.

    Raises:
        UsageError: naming every drift; nothing was run or spent.
    """
    found = drift(document, plan, raw_vars)
    if not found:
        return
    where = f" {str(path)!r}" if path is not None else ""
    shown = found[:20] + ([f"... and {len(found) - 20} more"] if len(found) > 20 else [])
    msg = (
        f"this run differs from the reviewed plan{where}:\n  - "
        + "\n  - ".join(shown)
        + "\nNothing was run or spent. Review the changes with `motionflow why RECIPE`, write "
        "a new plan with `motionflow plan RECIPE -o FILE`, or run without --plan"
    )
    raise UsageError(msg)


class Approval:
    """The last check of a paid generation before it is submitted, for ``run --plan``.

    The executor calls it with the instance's final parameters once its key is known (an
    earlier stage has made its media). It answers None when the generation is the reviewed
    one, else why it is not, and remembers every refusal in :attr:`refused`.
    """

    def __init__(self, document: dict[str, Any], plan: Plan) -> None:
        """Hold ``plan``'s run to the reviewed ``document`` (already checked by :func:`drift`)."""
        entries: list[dict[str, Any]] = document["to_run"]
        self.provider = plan.recipe.model.provider
        self.by_key = {e["key"]: e for e in entries if e.get("key")}
        self.by_identity = {_entry_identity(e): e for e in entries}
        self.refused: list[tuple[str, str]] = []

    def __call__(self, item: PlannedInstance, params: BaseModel) -> str | None:
        """None if the generation is the reviewed one; otherwise why it is not submitted."""
        reason = self._reason(item.instance, params)
        if reason is not None:
            self.refused.append((item.instance.label, reason))
        return reason

    def _reason(self, instance: Instance, params: BaseModel) -> str | None:
        components = key_components(instance, params, self.provider)
        key = instance_key(components)
        if key in self.by_key:
            return None
        entry = self.by_identity.get(_identity(instance))
        if entry is None:
            return "not submitted: it is not in the reviewed plan"
        old = entry.get("components")
        changes = (
            _component_changes(old, entry.get("pending") or [], components, [])
            if isinstance(old, dict)
            else []
        )
        if not changes and entry.get("key"):
            changes = [f"key {entry['key'][:12]}… -> {key[:12]}…"]
        usd = instance.impl.estimate(params, self.provider).usd
        planned = float(entry.get("estimated_usd") or 0.0)
        if usd > planned + _CENT:
            changes.append(f"it costs ${usd:.2f}, the plan says ${planned:.2f}")
        if not changes:
            return None
        return f"not submitted: it differs from the reviewed plan: {'; '.join(changes)}"
