"""Why an instance runs: its key components against the last run's (what an edit costs is
:mod:`motionflow.impact`)."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from motionflow.cache.store import Cache
from motionflow.errors import UsageError
from motionflow.manifest import entry_name
from motionflow.plan import Plan, PlannedInstance
from motionflow.resolve import short_tool_version, tool_changes
from motionflow.worddiff import edits, render, word_diff

__all__ = [
    "Change",
    "Explanation",
    "ExplanationGroup",
    "PreviewCache",
    "cause_of",
    "compare_components",
    "explain",
    "group_explanations",
    "prompt_diff",
    "short_digest",
    "tools_note",
]

_PROMPT_FIELDS = frozenset({"prompt", "template"})


class PreviewCache(Cache):
    """A cache that planning reads but never writes to.

    File digests are still memoised, but in memory only: ``why`` and ``impact`` must leave
    the cache as they found it.
    """

    def flush(self) -> None:
        """Keep memoised digests in memory only (nothing is written)."""


def short_digest(value: Any) -> str:
    """``blake3:5990b002…`` for a digest; other values as ``repr``, cut to 40 characters."""
    if isinstance(value, str) and value.startswith("blake3:"):
        return value[:15] + "…"
    if isinstance(value, dict) and "$file" in value:
        return short_digest(value["$file"])
    if value is None:
        return "(none)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 3.0 s is written 3 in recipes
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Change:
    """One key component that differs from the last run.

    Attributes:
        component: ``prompt``, ``param``, ``input``, ``env``, ``kind``, ``take`` or ``labels``.
        name: the parameter or environment entry (``duration``, ``image``, ``provider``).
        old: the last run's value (digests for files).
        new: the value now.
        diff: for a prompt, the word diff of the two renderings (``a [-red-]{+blue+} jacket``).
    """

    component: str
    name: str
    old: Any
    new: Any
    diff: str = ""

    def describe(self) -> str:
        """One line: ``duration: 3 -> 4``, ``input 'image': blake3:59…  -> blake3:ab…``."""
        if self.component == "prompt":
            return f"rendered prompt changed ({self.name})"
        if self.component == "input":
            return f"input {self.name!r}: {short_digest(self.old)} -> {short_digest(self.new)}"
        if self.component == "env" and self.name == "source":
            return f"function source changed: {short_digest(self.old)} -> {short_digest(self.new)}"
        prefix = {"env": "", "kind": "stage ", "take": "", "labels": ""}.get(self.component, "")
        return f"{prefix}{self.name}: {short_digest(self.old)} -> {short_digest(self.new)}"

    def signature(self) -> tuple[str, ...]:
        """What makes two changes the same change, so that ``why`` prints it once.

        A prompt's is its word edits (one template edit renders differently per variant but
        deletes and inserts the same words); any other change's is its field, old and new value.
        """
        if self.component == "prompt" and isinstance(self.old, str) and isinstance(self.new, str):
            return ("prompt", _canonical(edits(self.old, self.new)))
        return (self.component, self.name, _canonical(self.old), _canonical(self.new))

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (``why --json``)."""
        out = {"component": self.component, "name": self.name, "old": self.old, "new": self.new}
        if self.diff:
            out["diff"] = self.diff
        return out


def prompt_diff(old: str, new: str) -> str:
    """The whole word diff of two renderings of a prompt: ``a [-red-]{+blue+} jacket``."""
    return render(word_diff(old, new))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _is_file(value: Any) -> bool:
    return isinstance(value, dict) and "$file" in value


def _file_digest(value: Any) -> Any:
    return value["$file"] if _is_file(value) else value


def compare_components(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every key component that differs between the last run (``old``) and now (``new``)."""
    changes: list[Change] = []
    for part in ("kind", "kind_version"):
        if old.get(part) != new.get(part):
            changes.append(Change("kind", part.replace("_", " "), old.get(part), new.get(part)))
    old_env, new_env = old.get("env") or {}, new.get("env") or {}
    for name in sorted(set(old_env) | set(new_env)):
        if old_env.get(name) != new_env.get(name):
            changes.append(Change("env", name, old_env.get(name), new_env.get(name)))
    old_p, new_p = old.get("params") or {}, new.get("params") or {}
    for name in sorted(set(old_p) | set(new_p)):
        before, after = old_p.get(name), new_p.get(name)
        if before == after:
            continue
        if _is_file(before) or _is_file(after):
            changes.append(Change("input", name, _file_digest(before), _file_digest(after)))
        elif name in _PROMPT_FIELDS and isinstance(before, str) and isinstance(after, str):
            changes.append(Change("prompt", name, before, after, prompt_diff(before, after)))
        else:
            changes.append(Change("param", name, before, after))
    if old.get("take") != new.get("take"):
        changes.append(Change("take", "take", old.get("take"), new.get("take")))
    if old.get("labels") != new.get("labels"):
        changes.append(Change("labels", "gathered variants", old.get("labels"), new.get("labels")))
    return changes


@dataclass
class Explanation:
    """What ``why`` says about one instance.

    Attributes:
        label: ``stage[variant]`` (or ``stage[variant, take N]``).
        stage: the stage's name.
        variants: ids of the variants that share the instance.
        status: ``cached`` or ``run``.
        reason: the plan's reason.
        key: the cache key, None while an earlier stage's output is unknown.
        previous_key: the key the last run recorded, if any.
        components: the key components now (None when the key is not known yet).
        changes: what differs from the last run's components.
        new: the last run had no such instance.
        estimated_usd: what running it costs (0 when cached).
        imported: for a cached result that came in with ``cache import``, where from and when
            (``{"from": <archive name>, "at": <time>}``); None for results made here.
        tools: for a cached result, the versions of the programs (ffmpeg) it was made with, as
            its record says; None when it does not say (made before they were recorded).
        tools_here: the versions this machine would use (when the key is known).
        tool_changes: ``{"tool", "recorded", "here"}`` for each tool whose version differs.
            Not a reason to rebuild: tool versions are not part of keys
            (``--rebuild-on-tool-change`` rebuilds them).
    """

    label: str
    stage: str
    variants: list[str]
    status: str
    reason: str
    key: str | None
    previous_key: str | None
    components: dict[str, Any] | None
    changes: list[Change] = field(default_factory=list)
    new: bool = False
    estimated_usd: float = 0.0
    imported: dict[str, Any] | None = None
    tools: dict[str, str] | None = None
    tools_here: dict[str, str] = field(default_factory=dict)
    tool_changes: list[dict[str, str]] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        """Cached, and the same key components as the last run."""
        return self.status == "cached" and not self.changes

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (``why --json``)."""
        return {
            "instance": self.label,
            "stage": self.stage,
            "variants": self.variants,
            "status": self.status,
            "reason": self.reason,
            "unchanged": self.unchanged,
            "new": self.new,
            "key": self.key,
            "previous_key": self.previous_key,
            "estimated_usd": self.estimated_usd,
            "components": self.components,
            "changes": [c.to_json() for c in self.changes],
            "imported": self.imported,
            "tools": {
                "recorded": self.tools,
                "here": self.tools_here,
                "changed": self.tool_changes,
                "note": tools_note(self),
            },
        }


def tools_note(item: Explanation) -> str | None:
    """What ``why`` says of the tools a cached result was made with; None when nothing to say.

    ``made with ffmpeg 6.1; this machine has ffmpeg 7.0. Not a reason to rebuild ...``.
    """
    if item.status != "cached" or not item.tools:
        return None
    made = ", ".join(f"{n} {short_tool_version(n, v)}" for n, v in sorted(item.tools.items()))
    if not item.tool_changes:
        return f"made with {made} (the same here)"
    here = ", ".join(
        f"{c['tool']} {short_tool_version(c['tool'], c['here'])}" for c in item.tool_changes
    )
    return (
        f"made with {made}; this machine has {here}. A different tool version is not a reason "
        "to rebuild: tool versions are recorded, not part of the key, so the result is reused "
        "(`--rebuild-on-tool-change` rebuilds it)"
    )


def _recorded_tools(record: dict[str, Any] | None) -> dict[str, str] | None:
    tools = record.get("tools") if isinstance(record, dict) else None
    if not isinstance(tools, dict):
        return None
    return {str(k): str(v) for k, v in tools.items() if isinstance(v, str)}


def _explain_item(plan: Plan, item: PlannedInstance) -> Explanation:
    instance = item.instance
    name = entry_name(instance, instance.variants[0])
    entry = plan.previous.entries.get(name) or {}
    old = entry.get("components")
    changes: list[Change] = []
    if old is not None and item.components is not None:
        changes = compare_components(old, item.components)
    recorded = _recorded_tools(item.record) if item.status == "cached" else None
    return Explanation(
        label=instance.label,
        stage=instance.stage,
        variants=[v.id for v in instance.variants] if not instance.gathers else [],
        status=item.status,
        reason=item.reason,
        key=item.key,
        previous_key=entry.get("key"),
        components=item.components,
        changes=changes,
        new=old is None,
        estimated_usd=item.estimate.usd if item.status == "run" else 0.0,
        imported=_origin(item.record) if item.status == "cached" else None,
        tools=recorded,
        tools_here=dict(item.tools or {}),
        tool_changes=[
            {"tool": name, "recorded": old, "here": new}
            for name, old, new in tool_changes(recorded, item.tools or {})
        ],
    )


def _origin(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """``{"from", "at"}`` of a record added by ``cache import``, or None (text only)."""
    if not isinstance(record, dict):
        return None
    origin = record.get("imported")
    meta = record.get("meta")
    source = origin.get("from") if isinstance(origin, dict) else None
    if not isinstance(source, str) and isinstance(meta, dict):
        source = meta.get("imported_from")
    if not isinstance(source, str):
        return None
    at = origin.get("at") if isinstance(origin, dict) else None
    return {"from": source[:256], "at": at if isinstance(at, str) else None}


def explain(plan: Plan, stage: str | None = None, variant: str | None = None) -> list[Explanation]:
    """Explain every instance of ``plan`` (optionally one stage's, or one variant's).

    Raises:
        UsageError: ``stage`` or ``variant`` is not in the recipe.
    """
    stages = list(plan.recipe.model.stages)
    if stage is not None and stage not in stages:
        close = difflib.get_close_matches(stage, stages, n=3)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        msg = f"no stage {stage!r} in {plan.recipe.display}; {hint}its stages: {', '.join(stages)}"
        raise UsageError(msg)
    ids = [v.id for v in plan.recipe.variants]
    if variant is not None and variant not in ids:
        close = difflib.get_close_matches(variant, ids, n=3)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
        msg = f"no variant {variant!r} in {plan.recipe.display}; {hint}its variants: {shown}"
        raise UsageError(msg)
    chosen = [
        p
        for p in plan.items
        if (stage is None or p.instance.stage == stage)
        and (variant is None or any(v.id == variant for v in p.instance.variants))
    ]
    return [_explain_item(plan, p) for p in chosen]


@dataclass
class ExplanationGroup:
    """Instances that ``why`` explains once: the same status, for the same reason.

    Attributes:
        kind: ``unchanged``, ``changed`` (the same changes since the last run), ``new`` (no last
            run to compare with) or ``waiting`` (key not known until earlier stages run).
        status: ``cached`` or ``run``.
        headline: the shared reason in words (the plan's reason, or ``cause_of`` it).
        members: the explanations, in plan order.
        fields: per shared change, the names it has among the members (a template edit changes
            the prompt stage's ``template`` and the generation's ``prompt``).
    """

    kind: str
    status: str
    headline: str
    members: list[Explanation] = field(default_factory=list)
    fields: list[list[str]] = field(default_factory=list)

    @property
    def instances(self) -> list[str]:
        """The members' labels."""
        return [m.label for m in self.members]

    @property
    def changes(self) -> list[Change]:
        """The shared changes, as the first member has them (its words around each edit)."""
        return self.members[0].changes

    @property
    def estimated_usd(self) -> float:
        """What running the members costs."""
        return round(sum(m.estimated_usd for m in self.members), 2)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (``why --json``, ``groups``)."""
        return {
            "kind": self.kind,
            "status": self.status,
            "headline": self.headline,
            "count": len(self.members),
            "estimated_usd": self.estimated_usd,
            "instances": self.instances,
            "changes": [
                {**c.to_json(), "fields": names}
                for c, names in zip(self.changes, self.fields, strict=True)
            ],
        }


def _group_of(item: Explanation) -> tuple[str, str, str, tuple[Any, ...]]:
    """(kind, status, headline, what else must match) of the group ``item`` belongs to."""
    origin = _canonical([item.imported, tools_note(item)])  # made elsewhere, or otherwise
    if item.unchanged:
        return "unchanged", item.status, "unchanged (cached)", (origin,)
    if item.components is None:
        return "waiting", item.status, cause_of(item.reason), ()
    if item.new:
        return "new", item.status, item.reason, (item.stage,)
    signature = tuple(c.signature() for c in item.changes)
    # "resume job <id>" names each instance's own job: one group for all of them
    headline = cause_of(item.reason) if item.reason.startswith("resume job") else item.reason
    return "changed", item.status, headline, (origin, signature)


def group_explanations(items: Sequence[Explanation]) -> list[ExplanationGroup]:
    """Group the explanations that say the same thing, in the order their first member comes.

    Twenty variants whose rendered prompt changed by the same template edit are one group, as
    are the instances that wait for a stage, and those unchanged since the last run.
    """
    groups: dict[tuple[Any, ...], ExplanationGroup] = {}
    for item in items:
        kind, status, headline, rest = _group_of(item)
        group = groups.setdefault(
            (kind, status, headline, rest),
            ExplanationGroup(kind, status, headline, fields=[[] for _ in item.changes]),
        )
        group.members.append(item)
        for names, change in zip(group.fields, item.changes, strict=True):
            if change.name not in names:
                names.append(change.name)
    return list(groups.values())


def cause_of(reason: str) -> str:
    """A plan reason in words: ``rendered prompt changed`` -> ``editing the prompt``."""
    if reason == "new":
        return "new stages, variants or takes"
    if reason.startswith("waits for"):
        # "waits for take[red], take[blue]" -> one group per upstream stage, not per variant
        stages = sorted({part.strip().split("[", 1)[0] for part in reason[10:].split(",")})
        return f"downstream of what re-runs (waits for {', '.join(stages)})"
    if reason.startswith("resume job"):
        return "resuming jobs already paid for ($0.00 more)"
    if reason.startswith("not in the cache"):
        return "results missing from this cache (cleared, or another --cache)"
    parts: list[str] = []
    for part in reason.split(", "):
        if part == "rendered prompt changed":
            parts.append("the prompt (its template or a var it uses)")
        elif part.startswith("input ") and part.endswith(" changed (content digest)"):
            parts.append(part.removesuffix(" changed (content digest)") + " (new content)")
        elif part == "function source changed":
            parts.append("a python stage's function")
        else:
            parts.append(part)
    return "editing " + " and ".join(parts)
