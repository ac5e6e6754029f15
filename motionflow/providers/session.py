"""One run's connection to a generation provider, and the journal protocol around every job.

A :class:`GenerationSession` owns, for the length of a run, the HTTP client, the rate limiter
(shared with other motionflow processes through the cache directory), the publisher and, for
``provider: simulate``, the in-process fake server on loopback. :meth:`GenerationSession.generate`
turns one cache key into one downloaded video while following docs/api.md's
never-pay-twice rule:

1. the ``submitting`` record is written before the POST and the job id right after it; every
   submit of a key carries the same ``Idempotency-Key`` (a new one only when the user
   deliberately pays again with ``--retry-failed`` or ``--resubmit-lost``);
2. a record with a job id is polled again, never resubmitted; a completed one is downloaded
   again, never regenerated (:mod:`motionflow.providers.collect`);
3. an ambiguous submit is ``in_doubt`` and stays so: the usage API informs the user
   (``motionflow jobs``), who adopts a charge (``motionflow jobs adopt``) or pays again with
   ``--resubmit-in-doubt``; nothing decides for them.

The caller (the executor) holds the key's lock around :meth:`~GenerationSession.generate`, so two
processes never work on one key at once; every journal write for a key happens under that lock.
The decisions on an existing record live in :mod:`motionflow.providers.resume`, the flags in
:mod:`motionflow.providers.options`, the simulator in :mod:`motionflow.providers.simulate`.

With a team's remote (``leases``), the key lock's work is done across machines by the key's
lease (:mod:`motionflow.cache.lease`): a key with no local record is claimed on the remote
before it is submitted; a machine that loses the claim follows the winner's job (polls and
downloads it as a resumed job) instead of paying for it again; the job id and the final state
go to the lease as they go to the journal. The simulator (free, per process) takes no leases.
The submit steps live in :mod:`motionflow.providers.session_submit`, the lease steps in
:mod:`motionflow.providers.session_leases`; :class:`GenerationSession` inherits both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from motionflow.cache.journal import JobRecord, Journal
from motionflow.cache.locks import key_lock
from motionflow.errors import ProviderError
from motionflow.events import Event, JobCompleted, JobResumed, JobUpdate, Warning
from motionflow.providers.collect import Collector, JobPending
from motionflow.providers.empiriolabs import EmpirioLabsClient
from motionflow.providers.options import GenerationOptions, options_from_env
from motionflow.providers.ratelimit import RateLimiter
from motionflow.providers.resume import IN_FLIGHT, idempotency_key, resumable
from motionflow.providers.session_submit import MODEL_ID, JobSpec, SessionSubmits
from motionflow.providers.simulate import SIM_SCALE, Simulator
from motionflow.providers.status import Job, is_queued
from motionflow.publish.base import PublishedUrls, Publisher

if TYPE_CHECKING:
    from motionflow.cache.lease import Leases, Ticket

__all__ = [
    "IN_FLIGHT",
    "MODEL_ID",
    "Generated",
    "GenerationOptions",
    "GenerationSession",
    "JobSpec",
    "idempotency_key",
    "options_from_env",
]


@dataclass(frozen=True)
class Generated:
    """A downloaded generation.

    Attributes:
        path: the video, in the stage's work folder.
        record: the journal record (``stored``: its video is in the cache's blobs).
        resumed: the job was submitted by an earlier run.
    """

    path: Path
    record: JobRecord
    resumed: bool


class GenerationSession(SessionSubmits):
    """The provider connection of one run; create it lazily, close it with :meth:`aclose`.

    Args:
        provider: ``simulate`` (the fake server in-process, free) or ``empiriolabs``.
        cache: the cache (journal, locks, rate-limit state, blobs).
        memo: the cache's key-value table (published URLs are remembered there), or None.
        publisher: makes local files fetchable (None for a session that only collects).
        options: flags and settings.
        emit: sends events to the reporter.
        leases: the team's leases on paid submits (:class:`~motionflow.cache.lease.Leases`),
            or None without a remote; ignored by the simulator.
    """

    def __init__(
        self,
        provider: str,
        cache: Any,
        memo: Any,
        publisher: Publisher | None,
        options: GenerationOptions,
        emit: Callable[[Event], None],
        leases: Leases | None = None,
    ) -> None:
        self.provider = provider
        self.free = provider == "simulate"
        self.cache = cache
        self.journal = Journal(cache.root)
        self.options = options
        self.emit = emit
        self._root: Path = cache.root
        self._publisher = publisher
        self._urls = PublishedUrls(publisher, memo) if publisher is not None else None
        self._simulator = Simulator() if self.free else None
        self._leases = None if self.free else leases
        self._http: httpx.AsyncClient | None = None
        self._client: EmpirioLabsClient | None = None
        self._collector: Collector | None = None
        self._started = asyncio.Lock()
        self._submit_lock = asyncio.Lock()
        self.stopped: str | None = None
        """Why no more jobs may be submitted this run (bad key, no credits), or None."""
        self._stop_error: type[ProviderError] = ProviderError
        self._watched: dict[str, tuple[str, str, str, float]] = {}
        self._job_state: dict[str, str] = {}
        self.touched: list[JobRecord] = []
        """Every job this run worked on (submitted, resumed or collected)."""
        self.submitted: list[JobRecord] = []
        """Jobs this run submitted and the service accepted (and so billed)."""
        self.in_doubt: list[JobRecord] = []
        """Submits of this run whose fate is unknown (maybe billed)."""

    def __repr__(self) -> str:
        return f"GenerationSession(provider={self.provider!r}, cache={str(self._root)!r})"

    @property
    def charged_usd(self) -> float:
        """What this run's accepted submits cost: ``cost.amount`` where known, else the estimate.

        A submit answered by the service with an earlier job (an honoured Idempotency-Key) and
        a submit in doubt are not counted: neither is known to be a new charge.
        """
        if self.free:
            return 0.0
        return sum(
            r.actual_usd if r.actual_usd is not None else r.estimated_usd for r in self.submitted
        )

    # -- lifecycle ----------------------------------------------------------------------------
    async def client(self) -> EmpirioLabsClient:
        """The API client, connecting (and starting the simulator) on first use.

        Raises:
            UsageError: no API key, or a bad base URL.
        """
        async with self._started:
            if self._client is not None:
                return self._client
            timeout = httpx.Timeout(60.0, connect=10.0)
            self._http = httpx.AsyncClient(timeout=timeout, trust_env=not self.free)
            if self._simulator is not None:
                self._client = self._simulator.client(self._http)
            else:
                limiter = RateLimiter(self.options.rate_limit, state_dir=self._root)
                self._client = EmpirioLabsClient.from_env(
                    self._http,
                    env=self.options.env,
                    limiter=limiter,
                    poll_seconds=self.options.poll_seconds,
                )
            self._client.on_job = self._observed
            return self._client

    # -- progress events ----------------------------------------------------------------------
    def _update(
        self, stage: str, label: str, key: str, state: str, job_id: str, usd: float
    ) -> None:
        """Tell the reporter a job changed state (:class:`~motionflow.events.JobUpdate`)."""
        if job_id:
            if state in {"done", "failed", "pending"}:
                self._watched.pop(job_id, None)
                self._job_state.pop(job_id, None)
            else:
                self._watched[job_id] = (stage, label, key, usd)
                self._job_state[job_id] = state
        self.emit(JobUpdate(stage, label, key, state, job_id, usd))

    def _observed(self, job: Job) -> None:
        """A poll saw ``job``: report its state when it changed (queued, processing, done)."""
        watched = self._watched.get(job.job_id)
        if watched is None or job.state == "failed":
            return
        if job.state == "succeeded":
            state = "downloading"
        else:
            state = "queued" if is_queued(job.raw_status) else "processing"
        if self._job_state.get(job.job_id) != state:
            stage, label, key, usd = watched
            self._update(stage, label, key, state, job.job_id, usd)

    async def collector(self) -> Collector:
        """The poll/download/store machinery, sharing this session's client."""
        client = await self.client()
        if self._collector is None:
            self._collector = Collector(
                client=client,
                journal=self.journal,
                store=lambda path: str(self.cache.store_file(path)[0]),
                blob_path=self.cache.blob_path,
                job_timeout=self.options.job_timeout,
                retention=self.options.retention,
                not_found_patience=self.options.not_found_patience,
                poll_seconds=self.options.poll_seconds * (SIM_SCALE if self.free else 1.0),
                warn=lambda message: self.emit(Warning(message)),
            )
        return self._collector

    async def aclose(self) -> None:
        """Read what this run's jobs cost (from the usage API), then close everything."""
        try:
            if self._client is not None and not self.free:
                await self._settle_costs(self._client)
        finally:
            if self._http is not None:
                await self._http.aclose()
            if self._publisher is not None:
                await self._publisher.aclose()
            if self._simulator is not None:
                await asyncio.to_thread(self._simulator.stop)

    async def _settle_costs(self, client: EmpirioLabsClient) -> None:
        """Note ``cost.amount`` on this run's jobs, where a usage event names their video.

        Usage events carry no job id; the one tie to a job is its output URL (compared without
        the signature). A job without such a tie keeps its estimate. Each note is written under
        the key's lock, and only to the key's live record.
        """
        from motionflow.providers.usage import bare_url, charges_by_output, read_usage

        pending = [r for r in self.touched if r.output_urls and r.actual_usd is None]
        if not pending:
            return
        read = await read_usage(client, pending, self.emit)
        if read is None:
            return
        by_output = charges_by_output(read)
        for record in pending:
            urls = [bare_url(u) for u in record.output_urls]
            amount = next((by_output[u] for u in urls if u in by_output), None)
            if amount is None:
                continue
            async with key_lock(self._root, record.key):
                current = self.journal.get(record.key)
                if current is None or current.started_at != record.started_at:
                    continue  # replaced meanwhile: the newer record is not ours to change
                if current.actual_usd is None:
                    self.journal.annotate(current, actual_usd=amount)
                record.actual_usd = amount

    # -- one generation -------------------------------------------------------------------------
    async def generate(self, spec: JobSpec, workdir: Path) -> Generated:
        """Submit (or resume) the job of ``spec.key`` and download its video into ``workdir``.

        Raises:
            ProviderError: the job failed, is in doubt, is pending or lost, or the service
                refused it; the message names the stage, the job id and what to do.
        """
        try:
            return await self._generate(spec, workdir)
        except ProviderError as exc:
            # The run reports every failure beside its instance's label: say it once.
            prefix = f"{spec.label}: "
            text = str(exc)
            if text.startswith(prefix) and len(exc.args) == 1:
                exc.args = (text[len(prefix) :],)
            raise

    async def _generate(self, spec: JobSpec, workdir: Path) -> Generated:
        record = self.journal.get(spec.key)
        doubt = {"submitting", "in_doubt"}  # (submitting: a run stopped mid-POST, or mid-follow)
        if record is not None and record.state in doubt and self._leases is not None:
            record = await self._doubt_resolved_elsewhere(record)
        if record is not None:
            record = resumable(
                self.journal,
                record,
                label=spec.label,
                free=self.free,
                options=self.options,
                has_blob=self.cache.has_blob,
            )
        ticket: Ticket | None = None
        if record is None and self._leases is not None:
            await self.client()  # a configuration mistake stops before the claim
            ticket, record = await self._claim(spec)  # raises when it must stop
        resumed = record is not None
        client = await self.client()
        job_id = record.job_id or "" if record is not None else ""
        usd = 0.0 if resumed or self.free else spec.estimated_usd
        try:
            if record is None:
                record = await self._submit_leased(client, spec, ticket)
                job_id = record.job_id or ""
                if record.redownload:  # the lease moved meanwhile: following its new job
                    resumed, usd = True, 0.0
                    self.emit(JobResumed(spec.stage, spec.label, job_id, record.state))
            elif record.job_id:
                self.emit(JobResumed(spec.stage, spec.label, record.job_id, record.state))
                await self._settle_lease(spec.key)  # a holder back from a crash: the job id
            state = "downloading" if record.state in {"completed", "stored"} else "submitted"
            self._update(spec.stage, spec.label, spec.key, state, job_id, usd)
            self.touched.append(record)
            collector = await self.collector()
            path = await collector.collect(record, workdir, spec.label)
        except ProviderError as exc:
            end = "pending" if isinstance(exc, JobPending) else "failed"
            self._update(spec.stage, spec.label, spec.key, end, job_id, usd)
            if job_id:
                await self._settle_lease(spec.key)
            raise
        record = self.journal.get(spec.key) or record
        await self._settle_lease(spec.key)
        self._update(spec.stage, spec.label, spec.key, "done", job_id, usd)
        self.emit(
            JobCompleted(spec.stage, spec.label, record.job_id or "", record.billed_seconds or 0.0)
        )
        return Generated(path, record, resumed)

    def stored(self, record: JobRecord, blob: str) -> None:
        """Mark the job's video as safely in the cache (collecting already did, normally)."""
        if record.state == "completed" and self.journal.is_current(record):
            self.journal.advance(record, "stored", blob=blob)

    async def collect_pending(self, skip: set[str]) -> tuple[int, list[str]]:
        """Fetch every in-flight job of this provider in the cache whose key is not in ``skip``.

        The journal holds all a job needs (id, URLs), so jobs of other recipes, other vars or
        an interrupted run are brought home here, each under its key's lock.

        Returns:
            How many videos were stored, and a message for each job still pending or lost.
        """
        records = [
            r
            for r in self.journal.all()
            if r.state in IN_FLIGHT and r.provider == self.provider and r.key not in skip
        ]
        if not records:
            return 0, []
        collector = await self.collector()
        done = 0
        problems: list[str] = []

        async def one(record: JobRecord) -> None:
            nonlocal done
            async with key_lock(self._root, record.key):
                current = self.journal.get(record.key)
                if current is None or current.state not in IN_FLIGHT:
                    return  # another process got there first
                self.touched.append(current)
                job_id = current.job_id or ""
                state = "downloading" if current.state == "completed" else "submitted"
                where = (current.stage, current.label, current.key)
                self._update(*where, state, job_id, 0.0)
                with self.cache.workdir() as workdir:
                    try:
                        await collector.collect(current, workdir)
                    except ProviderError as exc:
                        end = "pending" if isinstance(exc, JobPending) else "failed"
                        self._update(*where, end, job_id, 0.0)
                        problems.append(str(exc))
                        await self._settle_lease(current.key)
                        return
                await self._settle_lease(current.key)
                self._update(*where, "done", job_id, 0.0)
                done += 1

        await asyncio.gather(*(one(r) for r in records))
        return done, problems
