"""The async executor: runs a plan's misses concurrently, reuses hits, never caches partials.

The executor decides; others do. Stage work goes through a
:class:`~motionflow.engine.backend.Backend` (this process by default), paid jobs through the
run's :class:`~motionflow.engine.generation.Generations` (built by the caller, or by
:func:`~motionflow.engine.generation.open_generations`). What stays here is what keeps money
safe: each key's lock around its work, the budget reserved under that lock, and nothing
partial in the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from motionflow.artifacts import Estimate
from motionflow.cache.integrity import lost_paid_result
from motionflow.cache.locks import key_lock
from motionflow.cache.store import Cache
from motionflow.engine.backend import Backend, LocalBackend
from motionflow.engine.generation import Generations, GenerationsFactory, open_generations
from motionflow.engine.harvest import Harvest
from motionflow.engine.result import RunResult
from motionflow.errors import BudgetError, MotionflowError
from motionflow.events import (
    Event,
    InstanceBlocked,
    InstanceCached,
    InstanceFailed,
    InstanceFinished,
    InstanceStarted,
    JobResumed,
    JobSubmitted,
    OutputWritten,
    RunStarted,
    Warning,
)
from motionflow.graph import Instance
from motionflow.keys import instance_key
from motionflow.manifest import entry_name
from motionflow.materialize import materialize
from motionflow.plan import Plan, PlannedInstance, already_paid
from motionflow.providers.options import GenerationOptions, options_from_env
from motionflow.resolve import bind, key_components, record_outputs, tool_versions
from motionflow.stages.base import StageContext, StageResult
from motionflow.version import installed_version

__all__ = ["execute"]


class _Blocked(Exception):  # noqa: N818 - control flow between tasks
    def __init__(self, because: str) -> None:
        super().__init__(because)
        self.because = because


@dataclass
class _Run:
    plan: Plan
    cache: Cache
    emit: Callable[[Event], None]
    jobs: int
    max_usd: float | None
    backend: Backend
    generations: Generations
    result: RunResult = field(default_factory=RunResult)
    local: Backend = field(default_factory=LocalBackend)
    session: Any = None
    approve: Callable[[PlannedInstance, Any], str | None] | None = None
    known: dict[str, dict[str, Any]] = field(default_factory=dict)
    reserved: float = 0.0
    inflight: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[dict[str, Any]]] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)  # variant folders made this run
    sem: asyncio.Semaphore = field(init=False)
    out_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.sem = asyncio.Semaphore(self.jobs)
        self.paid_sem = self.sem
        self.outputs = set(self.plan.recipe.model.outputs)
        self.out_dir = self.plan.recipe.out_dir  # a property that builds a Path: once
        self.manifest = self.plan.previous

    async def instance(self, item: PlannedInstance) -> dict[str, Any]:
        inst = item.instance
        for up in inst.upstream:
            try:
                await self.tasks[up.id]
            except Exception as exc:  # noqa: BLE001 - any upstream failure blocks this instance
                because = exc.because if isinstance(exc, _Blocked) else f"{up.label} failed"
                self.result.blocked += 1
                self.emit(InstanceBlocked(inst.stage, inst.label, because))
                raise _Blocked(because) from None
        if item.status == "cached" and item.key and item.record is not None:
            return self.finish_cached(item, item.key, item.components or {}, item.record)
        bound = bind(inst, self.known, self.plan.inputs)
        if not bound.complete or bound.params is None:
            msg = "; ".join(m for _, m in bound.errors) or f"unresolved {sorted(bound.waiting)}"
            return self.fail(inst, f"invalid parameters: {msg}", bad_input=True)
        provider = self.plan.recipe.model.provider
        try:
            components = key_components(inst, bound.params, provider)
        except ValueError as exc:
            return self.fail(inst, str(exc), bad_input=True)
        key = instance_key(components)
        # --rebuild-on-tool-change: a record made with another ffmpeg is computed again
        record = None if key in self.plan.rebuild else self.cache.get_result(key)
        if record is not None:
            return self.finish_cached(item, key, components, record)
        pending = self.inflight.get(key)
        if pending is not None:  # an identical instance (other upstreams, same content) runs
            outputs = await asyncio.shield(pending)
            self.known[inst.id] = outputs
            self.result.cached += 1
            self.after(inst, key, components, self.cache.get_result(key) or {})
            return outputs
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            outputs = await self.compute(item, bound.params, key, components)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved; waiters re-raise it themselves
            raise
        future.set_result(outputs)
        return outputs

    def finish_cached(
        self, item: PlannedInstance, key: str, components: dict[str, Any], record: dict[str, Any]
    ) -> dict[str, Any]:
        inst = item.instance
        outputs = record_outputs(record, self.cache.blob_path)
        self.known[inst.id] = outputs
        saved = float(record.get("meta", {}).get("estimated_usd", 0.0))
        self.result.cached += 1
        self.result.saved_usd += saved
        self.emit(InstanceCached(inst.stage, inst.label, key, saved))
        self.after(inst, key, components, record)
        return outputs

    def fail(self, inst: Instance, message: str, *, bad_input: bool = False) -> dict[str, Any]:
        self.result.failed += 1
        self.result.failed_on_input += bad_input
        self.result.failures.append((inst.label, message))
        self.emit(InstanceFailed(inst.stage, inst.label, message))
        raise _Blocked(f"{inst.label} failed")

    async def compute(
        self, item: PlannedInstance, params: Any, key: str, components: dict[str, Any]
    ) -> dict[str, Any]:
        inst = item.instance
        provider = self.plan.recipe.model.provider
        estimate = inst.impl.estimate(params, provider) if inst.impl.paid else None
        if inst.impl.paid:  # keys known only now (after upstreams ran) get the planner's check
            if (lost := lost_paid_result(self.cache, key)) is not None:
                return self.fail(inst, lost)
            if self.approve is not None and (refused := self.approve(item, params)) is not None:
                return self.fail(inst, refused)  # not the generation a reviewed plan approved
        session = None
        if inst.impl.paid:
            session = self.provider_session()
        # Generations wait on the network, not the CPU: they have their own concurrency.
        sem = self.paid_sem if inst.impl.paid else self.sem
        reserved = 0.0
        # A static stage (a rendered prompt) is a pure, cheap function of its parameters: two
        # processes making it at once waste nothing, so it takes no lock file (one file
        # created per instance otherwise, a third of a first build's metadata writes).
        static = inst.impl.static and not inst.impl.paid
        lock = contextlib.nullcontext() if static else key_lock(self.cache.root, key)
        async with sem, lock:
            # another process may have made it meanwhile (not a key to rebuild: that is ours)
            record = None if key in self.plan.rebuild else self.cache.get_result(key)
            if record is not None:
                return self.finish_cached(item, key, components, record)
            # The budget is decided under the key's lock, from the journal as it is now.
            if estimate is not None and already_paid(self.cache, key) is not None:
                estimate = Estimate(0.0, estimate.seconds)  # resumed: paid by an earlier run
            if estimate is not None and self.max_usd is not None:
                if self.reserved + estimate.usd > self.max_usd + 1e-9:
                    self.result.budget_refused = True
                    self.result.blocked += 1
                    because = (
                        f"budget: ${self.reserved:.2f} reserved + ${estimate.usd:.2f} would "
                        f"pass max_usd ${self.max_usd:.2f}"
                    )
                    self.emit(InstanceBlocked(inst.stage, inst.label, because))
                    raise _Blocked(because)
                self.reserved += estimate.usd
                reserved = estimate.usd
            preflight = getattr(inst.impl, "preflight", None)
            if inst.impl.paid and preflight is not None:  # media made during this run
                try:
                    # a clip made in this run is decoded in full: off the event loop
                    verdicts = await asyncio.to_thread(preflight, params, memo=self.cache)
                    found = [f"{name}: {message}" for name, message in verdicts]
                except MotionflowError as exc:
                    found = [str(exc)]
                if found:
                    self.reserved -= reserved
                    return self.fail(
                        inst,
                        "media check failed, nothing was submitted: " + "; ".join(found),
                        bad_input=True,
                    )
            self.emit(InstanceStarted(inst.stage, inst.label, key))
            started = time.monotonic()
            needs = getattr(inst.impl, "needs_workdir", None)  # optional: see stages/base.py
            with self.cache.workdir(create=needs is None or needs(params)) as workdir:
                ctx = StageContext(
                    workdir,
                    inst.stage,
                    provider,
                    inst.take,
                    inst.label,
                    self.emit,
                    inst.labels,
                    key=key,
                    recipe=self.plan.recipe.name,
                    session=session,
                )
                try:
                    # Paid work never leaves this process: one account, one journal.
                    runner = self.local if inst.impl.paid else self.backend
                    result = await runner.run_instance(inst, params, ctx)
                    record = self.store(inst, result, workdir, tool_versions(inst, params))
                except MotionflowError as exc:  # InputError, MediaError: the user's input
                    return self.fail(inst, str(exc), bad_input=exc.exit_code == 2)
                except Exception as exc:  # noqa: BLE001 - a stage's failure stops its dependents only
                    return self.fail(inst, f"{type(exc).__name__}: {exc}")
            self.cache.put_result(key, record)
            if result.on_stored is not None:
                result.on_stored(record)
        self.result.executed += 1
        if estimate is not None and result.meta.get("resumed"):
            # a job paid earlier, or by a teammate (followed through the team's lease):
            # nothing of this run's budget or spend
            self.reserved -= reserved
            self.result.saved_usd += estimate.usd
        elif estimate is not None:
            self.result.estimated_usd += estimate.usd
        self.emit(InstanceFinished(inst.stage, inst.label, key, time.monotonic() - started))
        outputs = record_outputs(record, self.cache.blob_path)
        self.known[inst.id] = outputs
        self.after(inst, key, components, record)
        return outputs

    def provider_session(self) -> Any:
        """The run's provider session, opened when the first generation needs it."""
        if self.session is None:
            self.session = self.generations.session()
            if not self.session.free:
                self.paid_sem = asyncio.Semaphore(self.session.options.max_jobs)
        return self.session

    def store(
        self, inst: Instance, result: StageResult, workdir: Path, tools: dict[str, str]
    ) -> dict[str, Any]:
        """The result record: outputs stored as blobs, and ``tools``, the versions of the
        programs that made them (recorded, never keyed)."""
        outputs: dict[str, Any] = {}
        for name, value in result.outputs.items():
            kind = inst.impl.outputs.get(name)
            if kind is None:
                msg = f"stage kind {inst.impl.kind!r} returned an undeclared output {name!r}"
                raise TypeError(msg)
            if kind == "file":
                path = Path(value)
                inside = path.resolve().is_relative_to(workdir.resolve())
                digest, size = self.cache.store_file(path, move=inside)
                outputs[name] = {"file": digest, "size": size, "ext": path.suffix.lower()}
            else:
                outputs[name] = {"value": value}
        return {
            "stage_kind": inst.impl.kind,
            "outputs": outputs,
            "meta": {**result.meta, "recipe": self.plan.recipe.name},  # `plan` names the maker
            "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "motionflow_version": installed_version(),
            "tools": dict(tools),
        }

    def after(
        self, inst: Instance, key: str, components: dict[str, Any], record: dict[str, Any]
    ) -> None:
        if inst.stage in self.outputs and record:
            paths = materialize(
                recipe=self.plan.recipe.name,
                out_dir=self.out_dir,
                instance=inst,
                key=key,
                components=components,
                record=record,
                blob_path=self.cache.blob_path,
                manifest=self.manifest,
                folders=self.folders,
            )
            for path in paths:
                self.emit(OutputWritten(path))
        else:
            for variant in inst.variants:
                self.manifest.record(entry_name(inst, variant), key, components, None)


async def _fetch_remote_inputs(plan: Plan, cache: Cache) -> None:
    from motionflow.fetch import fetch_input
    from motionflow.recipe.schema import RemoteInput

    needed = [
        (name, spec)
        for name, spec in plan.graph.inputs.items()
        if isinstance(spec, RemoteInput) and plan.inputs.get(name) is None
    ]
    results = await asyncio.gather(*(fetch_input(name, spec, cache) for name, spec in needed))
    for (name, _), artifact in zip(needed, results, strict=True):
        plan.inputs[name] = artifact


async def execute(
    plan: Plan,
    cache: Cache,
    *,
    reporter: Callable[[Event], None] | None = None,
    jobs: int | None = None,
    max_usd: float | None = None,
    backend: Backend | None = None,
    generation: GenerationOptions | None = None,
    publish: Any = None,
    approve: Callable[[PlannedInstance, Any], str | None] | None = None,
    generations: GenerationsFactory | None = None,
) -> RunResult:
    """Run a plan: hits are reused, misses run concurrently, failures block dependents only.

    Args:
        plan: what to run.
        cache: the cache.
        reporter: receives every event.
        jobs: local stages run at once (default: the CPU count).
        max_usd: the budget.
        backend: where free stage work runs (default: this process, closed at the end); a
            given backend is the caller's to close. Paid instances always run here.
        generation: provider flags and settings (defaults from the environment); only for
            the default ``generations``.
        publish: a publisher spec from the CLI, overriding the recipe's ``publish:``; only
            for the default ``generations``.
        approve: called with each paid instance and its final parameters once its key is
            known, before anything is submitted; a returned reason fails the instance unpaid
            (``run --plan`` holds generations to the reviewed plan with it).
        generations: builds the run's paid-job side (provider session, publisher, journal
            protocol, rate limiter) from the plan, the cache and the run's event sink; the
            default is :func:`~motionflow.engine.generation.open_generations` with
            ``generation`` and ``publish``. It is called before anything runs, so it should
            check the provider's configuration then.

    Raises:
        BudgetError: the plan's estimate is over ``max_usd`` (nothing has run).
        InputError: a remote input could not be fetched or is not what it was pinned to.
        UsageError: the provider cannot be used as configured (no API key, no publisher).
    """
    result = RunResult()

    def emit(event: Event) -> None:
        if isinstance(event, JobSubmitted):
            result.jobs_submitted += 1
        if isinstance(event, JobResumed):
            result.jobs_resumed += 1
        if reporter is not None:
            reporter(event)

    if max_usd is not None and plan.estimated_usd > max_usd + 1e-9:
        # Exact prices over the budget: refuse now. Upper bounds (a clip an earlier stage
        # makes, a result that may turn out cached) only warn; each job's price is reserved
        # before it is submitted, so the budget still holds.
        known = round(sum(p.estimate.usd for p in plan.to_run if p.estimate.exact), 2)
        if known > max_usd + 1e-9:
            msg = (
                f"the plan costs ${known:.2f}, over the budget of ${max_usd:.2f} "
                f"({len([p for p in plan.to_run if p.estimate.usd])} generations to submit); "
                "raise --max-usd or budget.max_usd, or trim the matrix. Nothing was submitted"
            )
            raise BudgetError(msg)
        emit(
            Warning(
                f"the plan costs at most ${plan.estimated_usd:.2f}, over the budget of "
                f"${max_usd:.2f}; each generation's price is reserved before it is submitted, "
                "and those past the budget are skipped (exit 3)"
            )
        )
    if generations is None:
        options = generation or options_from_env()
        generations = functools.partial(open_generations, options=options, publish=publish)
    paid = generations(plan, cache, emit)
    try:
        await _fetch_remote_inputs(plan, cache)
    except BaseException:
        await paid.aclose()
        raise
    workers = max(1, jobs or os.cpu_count() or 1)
    own_backend = backend is None
    chosen: Backend = backend if backend is not None else LocalBackend()
    run = _Run(plan, cache, emit, workers, max_usd, chosen, paid, result)
    run.approve = approve
    emit(RunStarted(plan.recipe.name, len(plan.to_run), len(plan.cached), plan.estimated_usd))
    harvest = Harvest(cache, paid, emit, skip={p.key for p in plan.items if p.key})
    try:
        await harvest.start()
        for item in plan.items:
            run.tasks[item.instance.id] = asyncio.create_task(run.instance(item))
        outcomes = await asyncio.gather(*run.tasks.values(), return_exceptions=True)
        bugs = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, _Blocked)]
        if bugs:
            raise bugs[0]
        await harvest.finish(result)
        out_dir = str(plan.recipe.out_dir)
        for item in plan.items:
            if item.instance.stage in run.outputs:
                for variant in item.instance.variants:
                    entry = run.manifest.entries.get(entry_name(item.instance, variant), {})
                    run.result.outputs.extend(
                        os.path.join(out_dir, rel)  # noqa: PTH118 - no Path per file (400,000)
                        for rel in entry.get("files", {})
                    )
    finally:
        for task in run.tasks.values():
            task.cancel()
        names = {
            entry_name(item.instance, v) for item in plan.items for v in item.instance.variants
        }
        if not run.result.failed and not run.result.blocked:
            run.manifest.keep_only(names)  # stale outputs go only after a complete run
        run.manifest.save()
        harvest.cancel()
        try:
            await paid.aclose()
            run.result.spent_usd = paid.charged_usd
            run.result.jobs_in_doubt = paid.in_doubt
        finally:
            if own_backend:
                await chosen.aclose()
    return result
