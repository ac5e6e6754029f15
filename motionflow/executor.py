"""The async executor: runs a plan's misses concurrently, reuses hits, never caches partials."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from motionflow.artifacts import Estimate
from motionflow.cache.locks import key_lock
from motionflow.cache.store import Cache
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
from motionflow.providers.session import GenerationOptions, options_from_env, session_factory
from motionflow.resolve import bind, key_components, record_outputs
from motionflow.stages.base import StageContext
from motionflow.version import __version__

__all__ = ["Backend", "LocalBackend", "RunResult", "execute"]


@dataclass
class RunResult:
    """What a run did; ``motionflow run --json`` prints it.

    Attributes:
        executed: instances that ran.
        cached: instances reused from the cache.
        failed: instances that failed.
        blocked: instances skipped because something they need failed or the budget ran out.
        jobs_submitted: generation jobs submitted (simulated ones included).
        jobs_resumed: jobs picked up from an earlier, interrupted run.
        estimated_usd: the provider price of what ran.
        spent_usd: dollars actually charged (0 with the simulate provider).
        saved_usd: the price of what was reused instead of paid again.
        outputs: files under out/ for the recipe's outputs.
        failures: ``(instance label, message)`` for each failure.
        failed_on_input: failures caused by the user's inputs or parameters (unreadable or
            rule-breaking media, a value no stage accepts), not by a stage or the service.
        budget_refused: the budget stopped at least one instance.
        jobs_collected: paid jobs of earlier runs (any recipe, any vars) fetched by this run.
        jobs_pending: for each paid job still in flight after the run, why and what to do.
        jobs_in_doubt: submits of this run whose fate is unknown (maybe charged).
    """

    executed: int = 0
    cached: int = 0
    failed: int = 0
    failed_on_input: int = 0
    blocked: int = 0
    jobs_submitted: int = 0
    jobs_resumed: int = 0
    estimated_usd: float = 0.0
    spent_usd: float = 0.0
    saved_usd: float = 0.0
    outputs: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    budget_refused: bool = False
    jobs_collected: int = 0
    jobs_pending: list[str] = field(default_factory=list)
    jobs_in_doubt: int = 0

    @property
    def exit_code(self) -> int:
        """0 ok, 1 a stage failed, 2 only bad inputs failed, 3 the budget stopped something.

        Bad input is exit 2 whether the planner or the run finds it (a downloaded SVG, a
        corrupt clip); a failure of a stage or the service (which a retry may fix) is exit 1.
        """
        if self.failed:
            return 2 if self.failed_on_input == self.failed else 1
        return 3 if self.budget_refused else 0

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary."""
        return {
            "executed": self.executed,
            "cached": self.cached,
            "failed": self.failed,
            "failed_on_input": self.failed_on_input,
            "blocked": self.blocked,
            "jobs_submitted": self.jobs_submitted,
            "jobs_resumed": self.jobs_resumed,
            "jobs_collected": self.jobs_collected,
            "jobs_pending": self.jobs_pending,
            "jobs_in_doubt": self.jobs_in_doubt,
            "estimated_usd": round(self.estimated_usd, 2),
            "spent_usd": round(self.spent_usd, 2),
            "saved_usd": round(self.saved_usd, 2),
            "outputs": self.outputs,
            "failures": [{"instance": i, "error": e} for i, e in self.failures],
            "exit_code": self.exit_code,
        }


class Backend(Protocol):
    """Where stage work runs. The local backend runs it in this process; a distributed one
    (Ray, Dask) can implement the same call without touching recipes."""

    async def run_instance(self, instance: Instance, params: Any, ctx: StageContext) -> Any:
        """Run one instance's stage and return its :class:`StageResult`."""
        ...


class LocalBackend:
    """Runs stages on this machine's event loop (subprocesses and threads for heavy work)."""

    async def run_instance(self, instance: Instance, params: Any, ctx: StageContext) -> Any:
        """Call the stage kind's ``run``."""
        return await instance.impl.run(params, ctx)


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
    result: RunResult = field(default_factory=RunResult)
    make_session: Callable[[], Any] | None = None
    session: Any = None
    approve: Callable[[PlannedInstance, Any], str | None] | None = None
    known: dict[str, dict[str, Any]] = field(default_factory=dict)
    reserved: float = 0.0
    inflight: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[dict[str, Any]]] = field(default_factory=dict)
    sem: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.sem = asyncio.Semaphore(self.jobs)
        self.paid_sem = self.sem
        self.outputs = set(self.plan.recipe.model.outputs)
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
        record = self.cache.get_result(key)
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
            from motionflow.cache.integrity import lost_paid_result

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
        async with sem, key_lock(self.cache.root, key):
            record = self.cache.get_result(key)  # another process may have made it meanwhile
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
            with self.cache.workdir() as workdir:
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
                    result = await self.backend.run_instance(inst, params, ctx)
                    record = self.store(inst, result, workdir)
                except MotionflowError as exc:  # InputError, MediaError: the user's input
                    return self.fail(inst, str(exc), bad_input=exc.exit_code == 2)
                except Exception as exc:  # noqa: BLE001 - a stage's failure stops its dependents only
                    return self.fail(inst, f"{type(exc).__name__}: {exc}")
            self.cache.put_result(key, record)
            if result.on_stored is not None:
                result.on_stored(record)
        self.result.executed += 1
        if estimate is not None:
            self.result.estimated_usd += estimate.usd
        self.emit(InstanceFinished(inst.stage, inst.label, key, time.monotonic() - started))
        outputs = record_outputs(record, self.cache.blob_path)
        self.known[inst.id] = outputs
        self.after(inst, key, components, record)
        return outputs

    def provider_session(self) -> Any:
        """The run's provider session, created when the first generation needs it."""
        if self.session is None and self.make_session is not None:
            self.session = self.make_session()
            if not self.session.free:
                self.paid_sem = asyncio.Semaphore(self.session.options.max_jobs)
        return self.session

    def store(self, inst: Instance, result: Any, workdir: Path) -> dict[str, Any]:
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
            "motionflow_version": __version__,
        }

    def after(
        self, inst: Instance, key: str, components: dict[str, Any], record: dict[str, Any]
    ) -> None:
        if inst.stage in self.outputs and record:
            paths = materialize(
                recipe=self.plan.recipe.name,
                out_dir=self.plan.recipe.out_dir,
                instance=inst,
                key=key,
                components=components,
                record=record,
                blob_path=self.cache.blob_path,
                manifest=self.manifest,
            )
            for path in paths:
                self.emit(OutputWritten(path))
        else:
            for variant in inst.variants:
                self.manifest.record(entry_name(inst, variant), key, components, None)


class _Harvest:
    """Collects the paid jobs in flight that this run's plan does not cover.

    Jobs of other recipes, other vars, or a run stopped by Ctrl-C are fetched while this run
    works, whenever an API key is at hand; otherwise the run says how many are waiting and how
    to collect them (the service keeps a finished job for one hour only).
    """

    def __init__(self, cache: Cache, options: GenerationOptions, emit: Any, skip: set[str]) -> None:
        self.cache = cache
        self.options = options
        self.emit = emit
        self.skip = skip
        self.session: Any = None
        self.task: asyncio.Task[tuple[int, list[str]]] | None = None
        self.waiting: list[str] = []

    async def start(self) -> None:
        from motionflow.cache.journal import Journal
        from motionflow.providers.session import IN_FLIGHT, GenerationSession

        journal = Journal(self.cache.root)
        keys = journal.open_keys() - self.skip  # cheap: no record is read when none is open
        found = [r for r in (journal.get(k) for k in sorted(keys)) if r is not None]
        for record in found:
            if record.provider == "simulate" and record.state in IN_FLIGHT:
                # its simulator died with the run that made it: nothing to fetch, nothing paid
                async with key_lock(self.cache.root, record.key):  # unless it runs right now
                    current = journal.get(record.key)
                    if current is not None and current.state in IN_FLIGHT:
                        why = "simulated job of an earlier run; its simulator is gone"
                        journal.archive(current, why)
        doubts = [r for r in found if r.provider != "simulate" and r.state not in IN_FLIGHT]
        if doubts:
            self.waiting.append(
                f"{len(doubts)} submit(s) of earlier runs are in doubt (maybe charged): "
                "`motionflow jobs` shows the account's charges around each; adopt one or pay "
                "again with --resubmit-in-doubt"
            )
        records = [r for r in found if r.state in IN_FLIGHT and r.provider == "empiriolabs"]
        if not records:
            return
        env = self.options.env if self.options.env is not None else os.environ
        if not env.get("EMPIRIOLABS_API_KEY", "").strip():
            self.waiting.append(
                f"{len(records)} paid job(s) of earlier runs are still to be fetched "
                f"({', '.join(sorted({r.label for r in records})[:5])}); set "
                "EMPIRIOLABS_API_KEY and run `motionflow jobs collect` within the hour the "
                "service keeps them"
            )
            return
        from motionflow.providers.empiriolabs import check_api_key

        check_api_key(env["EMPIRIOLABS_API_KEY"].strip())
        self.session = GenerationSession(
            "empiriolabs", self.cache, self.cache, None, self.options, self.emit
        )
        self.task = asyncio.create_task(self.session.collect_pending(self.skip))

    async def finish(self, result: RunResult) -> None:
        if self.task is not None:
            done, problems = await self.task
            result.jobs_collected += done
            result.jobs_pending.extend(problems)
        result.jobs_pending.extend(self.waiting)

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.session is not None:
            await self.session.aclose()


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
) -> RunResult:
    """Run a plan: hits are reused, misses run concurrently, failures block dependents only.

    Args:
        plan: what to run.
        cache: the cache.
        reporter: receives every event.
        jobs: local stages run at once (default: the CPU count).
        max_usd: the budget.
        backend: where stage work runs.
        generation: provider flags and settings (defaults from the environment).
        publish: a publisher spec from the CLI, overriding the recipe's ``publish:``.
        approve: called with each paid instance and its final parameters once its key is
            known, before anything is submitted; a returned reason fails the instance unpaid
            (``run --plan`` holds generations to the reviewed plan with it).

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
    options = generation or options_from_env()
    make_session = session_factory(plan, cache, options, publish, emit)
    await _fetch_remote_inputs(plan, cache)
    workers = max(1, jobs or os.cpu_count() or 1)
    run = _Run(plan, cache, emit, workers, max_usd, backend or LocalBackend(), result)
    run.make_session = make_session
    run.approve = approve
    emit(RunStarted(plan.recipe.name, len(plan.to_run), len(plan.cached), plan.estimated_usd))
    harvest = _Harvest(cache, options, emit, skip={p.key for p in plan.items if p.key})
    try:
        await harvest.start()
        for item in plan.items:
            run.tasks[item.instance.id] = asyncio.create_task(run.instance(item))
        outcomes = await asyncio.gather(*run.tasks.values(), return_exceptions=True)
        bugs = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, _Blocked)]
        if bugs:
            raise bugs[0]
        await harvest.finish(result)
        for item in plan.items:
            if item.instance.stage in run.outputs:
                for variant in item.instance.variants:
                    entry = run.manifest.entries.get(entry_name(item.instance, variant), {})
                    run.result.outputs.extend(
                        str(plan.recipe.out_dir / rel) for rel in entry.get("files", {})
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
        await harvest.close()
        if run.session is not None:
            await run.session.aclose()
            run.result.spent_usd = run.session.charged_usd
            run.result.jobs_in_doubt = len(run.session.in_doubt)
    return result
