"""Planning: the status, reason and cost of every stage instance, before anything runs."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from motionflow.artifacts import Estimate, FileArtifact
from motionflow.cache.store import Cache
from motionflow.errors import CacheError, Diagnostic, MediaError, RecipeError
from motionflow.graph import Graph, Instance, LocalInput, build_graph
from motionflow.keys import instance_key
from motionflow.manifest import Manifest, entry_name
from motionflow.recipe.loader import Recipe
from motionflow.recipe.schema import RemoteInput
from motionflow.resolve import (
    bind,
    key_components,
    record_outputs,
    short_tool_version,
    tool_changes,
    tool_versions,
)

__all__ = [
    "Plan",
    "PlannedInstance",
    "already_paid",
    "brief_reason",
    "describe_changes",
    "describe_origin",
    "made_by",
    "make_plan",
    "resolve_inputs",
    "stage_reason",
    "tool_change_reason",
]


@dataclass
class PlannedInstance:
    """One instance in the plan.

    Attributes:
        instance: the graph node.
        status: ``cached`` (reused, free) or ``run``.
        reason: why it runs: ``new``, which key component changed, or what it waits for.
        key: the cache key, when every input is known already.
        components: the key's components (kept for the next run's reasons).
        estimate: cost of running it (0 when cached).
        saved_usd: what reusing it saves, when cached.
        outputs: the outputs, when known (cached, or static stages).
        record: the cache record of a hit.
        params: while it waits for an earlier stage (no key yet), its partial parameters
            (waiting ones hold ``UNRESOLVED``): a plan file records what is known of them.
        waits: the labels of the earlier instances it waits for (see ``brief_reason``).
        tools: when its key is known, the versions of the external programs (ffmpeg) that
            would make its bytes on this machine (recorded, never keyed; ``why`` compares
            them with ``record["tools"]``).
    """

    instance: Instance
    status: str
    reason: str
    key: str | None = None
    components: dict[str, Any] | None = None
    estimate: Estimate = field(default_factory=Estimate)
    saved_usd: float = 0.0
    outputs: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    params: BaseModel | None = None
    waits: tuple[str, ...] = ()
    tools: dict[str, str] | None = None

    @property
    def made_by(self) -> dict[str, str | None] | None:
        """Where a hit came from: ``{"recipe", "at", "imported_from"}`` (None for a miss).

        The cache is shared by every project on the machine, so a hit may be another
        recipe's work. Records stored before the recipe was recorded have ``recipe`` None.
        """
        if self.status != "cached" or not isinstance(self.record, dict):
            return None
        return made_by(self.record)


@dataclass
class Plan:
    """What a run would do, and what it would cost.

    ``rebuild`` holds the keys that are in the cache but must be computed again all the same
    (``--rebuild-on-tool-change``: made with another ffmpeg than this machine's); the
    executor does not reuse their records, and the fresh results replace them.
    """

    recipe: Recipe
    graph: Graph
    items: list[PlannedInstance]
    inputs: dict[str, FileArtifact | None]
    previous: Manifest
    rebuild: set[str] = field(default_factory=set)

    @property
    def to_run(self) -> list[PlannedInstance]:
        """Instances that will run."""
        return [p for p in self.items if p.status == "run"]

    @property
    def cached(self) -> list[PlannedInstance]:
        """Instances reused from the cache."""
        return [p for p in self.items if p.status == "cached"]

    @property
    def estimated_usd(self) -> float:
        """Dollars the misses would cost at the provider's price (cache hits cost nothing)."""
        return round(sum(p.estimate.usd for p in self.items if p.status == "run"), 2)

    @property
    def saved_usd(self) -> float:
        """Dollars the cache hits save."""
        return round(sum(p.saved_usd for p in self.items if p.status == "cached"), 2)

    @property
    def exact(self) -> bool:
        """False when some estimate is an upper bound (an input's length is not known yet)."""
        return all(p.estimate.exact for p in self.items if p.status == "run")


def resolve_inputs(
    inputs: Mapping[str, LocalInput | RemoteInput], cache: Cache
) -> dict[str, FileArtifact | None]:
    """Digest local inputs (through the stat memo) and look up remote ones.

    A remote input is known (by its content digest) once fetched; until then it is None and
    the instances using it plan as "waits for an input download".
    """
    artifacts: dict[str, FileArtifact | None] = {}
    for name, spec in inputs.items():
        if isinstance(spec, LocalInput):
            digest = cache.digest_path(spec.path)
            artifacts[name] = FileArtifact(digest, spec.path, spec.path.suffix.lower())
            continue
        # Remote files are keyed by their content (blake3), like local ones, so the same bytes
        # from a URL, a pinned URL or a local path are one generation, paid once.
        ext = Path(spec.url.split("?")[0]).suffix.lower()
        if spec.sha256:
            stored: str | None = cache.get("pin:sha256:" + spec.sha256.lower())
        else:
            stored = cache.get("url:" + spec.url)
        if stored and cache.has_blob(stored):
            artifacts[name] = FileArtifact(stored, cache.blob_path(stored), ext)
        else:
            artifacts[name] = None  # fetched at the start of the run
    return artifacts


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Human descriptions of which key components differ between two runs."""
    if old is None:
        return ["new"]
    changes: list[str] = []
    if old.get("kind") != new.get("kind"):
        changes.append(f"stage kind {old.get('kind')} -> {new.get('kind')}")
    elif old.get("kind_version") != new.get("kind_version"):
        changes.append(f"stage kind version {old.get('kind_version')} -> {new.get('kind_version')}")
    old_env, new_env = old.get("env", {}), new.get("env", {})
    for name in sorted(set(old_env) | set(new_env)):
        if old_env.get(name) != new_env.get(name):
            if name == "source":
                changes.append("function source changed")
            else:
                changes.append(
                    f"{name}: {_short(old_env.get(name))} -> {_short(new_env.get(name))}"
                )
    old_p, new_p = old.get("params", {}), new.get("params", {})
    for name in sorted(set(old_p) | set(new_p)):
        before, after = old_p.get(name), new_p.get(name)
        if before == after:
            continue
        if isinstance(after, dict) and "$file" in after:
            changes.append(f"input {name!r} changed (content digest)")
        elif name in ("prompt", "template"):
            changes.append("rendered prompt changed")
        else:
            changes.append(f"{name}: {_short(before)} -> {_short(after)}")
    if old.get("take") != new.get("take"):
        changes.append("take changed")
    if old.get("labels") != new.get("labels"):
        changes.append("gathered variants changed")
    return changes


def _where(instance: Instance, path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    return ("stages", instance.stage, "with", *path)


def make_plan(
    recipe: Recipe,
    cache: Cache,
    *,
    graph: Graph | None = None,
    rebuild_on_tool_change: bool = False,
) -> Plan:
    """Plan a run: bind every instance, compute the keys that can be known, look up the cache.

    Tool versions (ffmpeg's) are not part of keys. With ``rebuild_on_tool_change``, a hit
    whose record says it was made with another version of a tool than this machine's is
    planned as ``run`` (reason ``ffmpeg changed: 6.1 -> 7.0 (--rebuild-on-tool-change)``)
    and its key goes into ``Plan.rebuild``. Records
    made before tool versions were recorded are not rebuilt.

    Raises:
        RecipeError: every parameter problem of every instance (each reported once).
    """
    rebuild: set[str] = set()
    graph = graph or build_graph(recipe, strict=False)
    for folder in (recipe.root, recipe.path.parent):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    inputs = resolve_inputs(graph.inputs, cache)
    previous = Manifest.load(recipe.out_dir)
    previous.claim(recipe.path, recipe.display, recipe.root)  # one recipe per out/<name>/
    provider = recipe.model.provider
    known: dict[str, dict[str, Any]] = {}
    problems: list[Diagnostic] = list(graph.problems)
    seen: set[tuple[str, int, int]] = {(d.message, d.line, d.column) for d in problems}
    running: set[str] = set()

    def problem(instance: Instance, path: tuple[str | int, ...], message: str) -> None:
        diag = recipe.smap.diagnostic(
            _where(instance, path),
            f"stage {instance.stage!r}: {message}",
            at_key=message.startswith("unknown parameter"),
        )
        marker = (diag.message, diag.line, diag.column)
        if marker not in seen:
            seen.add(marker)
            problems.append(diag)

    planned: dict[str, PlannedInstance] = {}
    by_stage: dict[str, list[Instance]] = {}
    for instance in graph.instances:
        by_stage.setdefault(instance.stage, []).append(instance)
    # Stage by stage (a stage's inputs come from earlier stages only), so the cache is asked
    # once per stage for all its keys rather than once per instance.
    for stage in graph.stage_order:
        keyed: list[tuple[Instance, BaseModel, dict[str, Any], str]] = []
        for instance in by_stage.get(stage, []):
            bound = bind(instance, known, inputs)
            for path, message in bound.errors:
                problem(instance, path, message)
            if bound.errors or bound.params is None:
                planned[instance.id] = PlannedInstance(instance, "run", "invalid parameters")
                continue
            if not bound.complete:
                waits = sorted({u.label for u in instance.upstream if u.id in running})
                reason = f"waits for {', '.join(waits)}" if waits else "waits for an input download"
                estimate = _estimate(instance, bound.params, provider)
                planned[instance.id] = PlannedInstance(
                    instance,
                    "run",
                    reason,
                    estimate=estimate,
                    params=bound.params,
                    waits=tuple(waits),
                )
                running.add(instance.id)
                continue
            try:
                components = key_components(instance, bound.params, provider)
            except ValueError as exc:
                problem(instance, ("call",), str(exc))
                planned[instance.id] = PlannedInstance(instance, "run", "invalid parameters")
                continue
            keyed.append((instance, bound.params, components, instance_key(components)))
        records = cache.get_results([key for *_, key in keyed])
        for instance, params, _, key in keyed:
            # Paid work whose media is already known is checked against the model's rules
            # now: a file the service would reject is a recipe error, and nothing is spent.
            # (video.prepare checks its source's length the same way: a clip too short.)
            preflight = getattr(instance.impl, "preflight", None)
            if key not in records and preflight is not None:
                try:
                    for field_name, message in preflight(params, memo=cache):
                        problem(instance, (field_name,), message)
                except MediaError as exc:
                    problem(instance, (), str(exc))
        for instance, params, components, key in keyed:
            item = _keyed(
                instance, params, components, key, records.get(key), cache, previous, provider
            )
            # never a paid stage: a tool change must not cost money, even when opted in
            rebuilds = rebuild_on_tool_change and not instance.impl.paid
            if rebuilds and item.status == "cached" and item.record is not None:
                changed = tool_changes(item.record.get("tools"), item.tools or {})
                if changed:
                    item = _rebuilt(item, changed, _estimate(instance, params, provider))
                    rebuild.add(key)
            planned[instance.id] = item
            if item.outputs is not None:
                known[instance.id] = item.outputs
            else:
                running.add(instance.id)
    items = [planned[i.id] for i in graph.instances if i.id in planned]
    if problems:
        raise RecipeError(problems)
    cache.flush()
    return Plan(recipe, graph, items, inputs, previous, rebuild)


_FREE = Estimate()


def _keyed(
    instance: Instance,
    params: BaseModel,
    components: dict[str, Any],
    key: str,
    record: dict[str, Any] | None,
    cache: Cache,
    previous: Manifest,
    provider: str,
) -> PlannedInstance:
    """Plan an instance whose key is known: a hit, or a miss with its reason and price."""
    tools = tool_versions(instance, params)
    if record is not None:
        outputs = record_outputs(record, cache.blob_path)
        saved = float(record.get("meta", {}).get("estimated_usd", 0.0))
        # "unchanged" since this project's last run; else the hit is someone else's work
        mine = previous.entries.get(entry_name(instance, instance.variants[0]), {})
        return PlannedInstance(
            instance,
            "cached",
            "unchanged" if mine.get("key") == key else describe_origin(made_by(record)),
            key,
            components,
            saved_usd=saved,
            outputs=outputs,
            record=record,
            tools=tools,
        )
    old = previous.components(entry_name(instance, instance.variants[0]))
    reason = ", ".join(describe_changes(old, components)) or (
        "not in the cache (cleared, or another --cache)"
    )
    estimate = _estimate(instance, params, provider)
    if instance.impl.paid:
        from motionflow.cache.integrity import lost_paid_result

        lost = lost_paid_result(cache, key)
        if lost is not None:  # a paid file was lost: never paid for again without being asked
            msg = f"{instance.label}: {lost}"
            raise CacheError(msg)
        paid = already_paid(cache, key)
        if paid is not None:  # the journal holds a job for this key: resumed, not resubmitted
            reason, estimate = paid, Estimate(0.0, estimate.seconds, exact=True)
    # a static stage's outputs are known without running it (its text keys what follows)
    evaluated = instance.impl.evaluate(params) if instance.impl.static else None
    return PlannedInstance(
        instance, "run", reason, key, components, estimate, outputs=evaluated, tools=tools
    )


def tool_change_reason(changes: list[tuple[str, str, str]]) -> str:
    """``ffmpeg changed: 6.1 -> 7.0 (--rebuild-on-tool-change)`` for ``tool_changes``."""
    parts = [
        f"{name} changed: {short_tool_version(name, old)} -> {short_tool_version(name, new)}"
        for name, old, new in changes
    ]
    return ", ".join(parts) + " (--rebuild-on-tool-change)"


def _rebuilt(
    item: PlannedInstance, changes: list[tuple[str, str, str]], estimate: Estimate
) -> PlannedInstance:
    """A hit planned to run again because its tools differ from this machine's (opt-in).

    Its outputs are no longer known (another ffmpeg may make other bytes), so what reads them
    waits for it.
    """
    return PlannedInstance(
        item.instance,
        "run",
        tool_change_reason(changes),
        item.key,
        item.components,
        estimate,
        tools=item.tools,
    )


def already_paid(cache: Cache, key: str) -> str | None:
    """Why a paid miss costs nothing more: an earlier run's job that will be resumed."""
    from motionflow.cache.journal import Journal

    record = Journal(cache.root).get(key)
    if record is None or record.state not in _RESUMED:
        return None
    if record.job_id is None and record.adopted_event is None:
        return None
    what = f"job {record.job_id}" if record.job_id else f"adopted charge {record.adopted_event}"
    return f"resume {what} ({record.state}, already paid)"


_RESUMED = frozenset({"submitted", "completed", "stored"})


def _estimate(instance: Instance, params: BaseModel, provider: str) -> Estimate:
    return instance.impl.estimate(params, provider) if instance.impl.paid else _FREE


def made_by(record: Mapping[str, Any]) -> dict[str, str | None]:
    """``{"recipe", "at", "imported_from"}`` of a cache record; None where it does not say.

    ``at`` is the day it was stored (``YYYY-MM-DD``); ``recipe`` the recipe whose run stored
    it (recorded since issue 11; older records do not say); ``imported_from`` the archive a
    ``cache import`` took it from.
    """
    meta = record.get("meta")
    meta = meta if isinstance(meta, Mapping) else {}
    created = record.get("created_at")
    imported = meta.get("imported_from")

    def text(value: Any) -> str | None:
        return value[:80] if isinstance(value, str) and value else None

    return {
        "recipe": text(meta.get("recipe")),
        "at": text(created[:10]) if isinstance(created, str) else None,
        "imported_from": text(imported),
    }


def describe_origin(origin: Mapping[str, str | None]) -> str:
    """A hit's origin in words: ``made by quickstart, 2025-01-31`` (a recipe's name, a day)."""
    on = f", {origin['at']}" if origin.get("at") else ""
    if origin.get("imported_from"):
        return f"imported from {origin['imported_from']}{on}"
    if origin.get("recipe"):
        return f"made by {origin['recipe']}{on}"
    return f"made earlier{on}"


def brief_reason(item: PlannedInstance, *, labels: int = 2) -> str:
    """``item.reason`` with a long list of waits collapsed: ``waits for 20 take instances``.

    Up to ``labels`` instances are named; past that they are counted per stage.
    """
    if len(item.waits) <= labels:
        return item.reason
    counts: dict[str, int] = {}
    for label in item.waits:
        stage = label.split("[", 1)[0]
        counts[stage] = counts.get(stage, 0) + 1
    parts = [f"{n} {stage} instances" if n > 1 else stage for stage, n in counts.items()]
    return "waits for " + ", ".join(parts)


def stage_reason(item: PlannedInstance) -> str:
    """The reason with the waits named by stage only (``waits for take``), for summaries."""
    if not item.waits:
        return item.reason
    return "waits for " + ", ".join(sorted({label.split("[", 1)[0] for label in item.waits}))
