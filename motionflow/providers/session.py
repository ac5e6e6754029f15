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
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from motionflow.artifacts import FileArtifact
from motionflow.cache.journal import JobRecord, Journal
from motionflow.cache.locks import key_lock
from motionflow.errors import ProviderError, UsageError
from motionflow.events import Event, JobCompleted, JobResumed, JobSubmitted, JobUpdate, Warning
from motionflow.providers.collect import Collector, JobPending
from motionflow.providers.empiriolabs import (
    DEFAULT_BASE_URL,
    AuthError,
    EmpirioLabsClient,
    InsufficientCredits,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    ServiceUnreachable,
    SubmitInDoubt,
    SubmitRequest,
    check_api_key,
    check_base_url,
)
from motionflow.providers.envelopes import LOST_HINT, RESUBMIT_HINT
from motionflow.providers.ratelimit import RateLimiter
from motionflow.providers.status import Job, is_queued
from motionflow.publish.base import PublishedUrls, Publisher

__all__ = [
    "IN_FLIGHT",
    "Generated",
    "GenerationOptions",
    "GenerationSession",
    "JobSpec",
    "idempotency_key",
    "options_from_env",
    "session_factory",
]

MODEL_ID = "kling-v3-motion-control"
IN_FLIGHT = frozenset({"submitted", "completed"})
"""Journal states of jobs that are paid for and whose video is still to be fetched."""
# simulate: the in-process fake server runs at this fraction of real time
_SIM_SCALE = 0.02


def idempotency_key(key: str, attempt: int) -> str:
    """The ``Idempotency-Key`` of every submit of cache ``key`` (which includes the take).

    The same for a first submit and a ``--resubmit-in-doubt``, so a service that honours the
    header answers the resubmission with the first job; ``attempt`` grows only when the user
    deliberately pays again for a failed or lost job.
    """
    return f"mf-{key[:40]}-{attempt}"


@dataclass(frozen=True)
class GenerationOptions:
    """How a run talks to its provider (CLI flags and ``EMPIRIOLABS_*`` settings).

    Attributes:
        resubmit_in_doubt: pay again for jobs whose submit is in doubt (same Idempotency-Key).
        resubmit_lost: pay again for jobs whose result is lost.
        retry_failed: submit again jobs the service reported as failed.
        rate_limit: API requests per minute, for every process on this cache.
        poll_seconds: the first poll interval (later ones grow to 3x it).
        job_timeout: seconds a job may run once it has left the queue.
        retention: seconds the service keeps a job after it completes (the contract: 1 hour).
        not_found_patience: seconds a run keeps retrying 404s and failed downloads of a job.
        max_jobs: generations in flight at once (the rate limit is the real bound).
        env: where ``EMPIRIOLABS_API_KEY`` and ``EMPIRIOLABS_BASE_URL`` are read (never shown
            by ``repr``: it holds the key).
    """

    resubmit_in_doubt: bool = False
    resubmit_lost: bool = False
    retry_failed: bool = False
    rate_limit: int = 50
    poll_seconds: float = 5.0
    job_timeout: float = 1800.0
    retention: float = 3600.0
    not_found_patience: float = 300.0
    max_jobs: int = 10
    env: Mapping[str, str] | None = field(default=None, repr=False, compare=False)


def _env_number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value >= minimum or math.isinf(value):
        msg = f"{name}={raw!r} is not a number >= {minimum:g}; fix or unset it"
        raise UsageError(msg)
    return value


def options_from_env(env: Mapping[str, str] | None = None, **flags: Any) -> GenerationOptions:
    """Options from ``EMPIRIOLABS_RATE_LIMIT``, ``_POLL_SECONDS``, ``_JOB_TIMEOUT``,
    ``_RETENTION_SECONDS``, ``_NOT_FOUND_PATIENCE``, ``_MAX_JOBS`` and the given CLI
    ``flags`` (which win).

    Raises:
        UsageError: a variable is not a valid number.
    """
    source = dict(os.environ if env is None else env)
    values: dict[str, Any] = {
        "rate_limit": int(_env_number(source, "EMPIRIOLABS_RATE_LIMIT", 50, minimum=1)),
        "poll_seconds": _env_number(source, "EMPIRIOLABS_POLL_SECONDS", 5.0, minimum=0.001),
        "job_timeout": _env_number(source, "EMPIRIOLABS_JOB_TIMEOUT", 1800.0, minimum=1),
        "retention": _env_number(source, "EMPIRIOLABS_RETENTION_SECONDS", 3600.0, minimum=0),
        "not_found_patience": _env_number(
            source, "EMPIRIOLABS_NOT_FOUND_PATIENCE", 300.0, minimum=0
        ),
        "max_jobs": int(_env_number(source, "EMPIRIOLABS_MAX_JOBS", 10, minimum=1)),
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    return GenerationOptions(env=source, **values)


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


@dataclass(frozen=True)
class JobSpec:
    """What one generation asks for, and who asks (for the journal and messages)."""

    key: str
    stage: str
    label: str
    recipe: str
    image: FileArtifact
    video: FileArtifact
    prompt: str
    mode: str
    character_orientation: str
    duration: float
    keep_original_sound: bool
    estimated_usd: float


class GenerationSession:
    """The provider connection of one run; create it lazily, close it with :meth:`aclose`.

    Args:
        provider: ``simulate`` (the fake server in-process, free) or ``empiriolabs``.
        cache: the cache (journal, locks, rate-limit state, blobs).
        memo: the cache's key-value table (published URLs are remembered there), or None.
        publisher: makes local files fetchable (None for a session that only collects).
        options: flags and settings.
        emit: sends events to the reporter.
    """

    def __init__(
        self,
        provider: str,
        cache: Any,
        memo: Any,
        publisher: Publisher | None,
        options: GenerationOptions,
        emit: Callable[[Event], None],
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
        self._fake: Any = None
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
            if self.free:
                self._client = self._simulator_client(self._http)
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

    def _simulator_client(self, http: httpx.AsyncClient) -> EmpirioLabsClient:
        from motionflow.fakeapi.server import FakeConfig, FakeEmpirioLabs

        self._fake = FakeEmpirioLabs(FakeConfig(api_key=None, time_scale=_SIM_SCALE))
        url = self._fake.start()
        return EmpirioLabsClient(
            http,
            api_key="sk-empiriolabs-simulated",
            base_url=url,
            poll_seconds=5.0 * _SIM_SCALE,
        )

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
                poll_seconds=self.options.poll_seconds * (_SIM_SCALE if self.free else 1.0),
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
            if self._fake is not None:
                await asyncio.to_thread(self._fake.stop)

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
        if record is not None:
            record = await self._resumable(spec, record)
        resumed = record is not None
        client = await self.client()
        job_id = record.job_id or "" if record is not None else ""
        usd = 0.0 if resumed or self.free else spec.estimated_usd
        try:
            if record is None:
                record = await self._submit(client, spec)
                job_id = record.job_id or ""
            elif record.job_id:
                self.emit(JobResumed(spec.stage, spec.label, record.job_id, record.state))
            state = "downloading" if record.state in {"completed", "stored"} else "submitted"
            self._update(spec.stage, spec.label, spec.key, state, job_id, usd)
            self.touched.append(record)
            collector = await self.collector()
            path = await collector.collect(record, workdir, spec.label)
        except ProviderError as exc:
            end = "pending" if isinstance(exc, JobPending) else "failed"
            self._update(spec.stage, spec.label, spec.key, end, job_id, usd)
            raise
        record = self.journal.get(spec.key) or record
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
                        return
                self._update(*where, "done", job_id, 0.0)
                done += 1

        await asyncio.gather(*(one(r) for r in records))
        return done, problems

    async def _resumable(self, spec: JobSpec, record: JobRecord) -> JobRecord | None:
        """The journal record to carry on with, or None to submit a new job.

        Raises:
            ProviderError: the record is failed, in doubt or lost and the user did not ask to
                pay again.
        """
        if record.state == "stored" and not (record.blob and self.cache.has_blob(record.blob)):
            # The cache lost the video the journal says it stored: download it again (free).
            self.journal.archive(record, "the cache no longer had the video; downloading again")
            record = self._copy_as_completed(record)
        if self.free and record.state in IN_FLIGHT:
            # A simulated job lives in the simulator of the run that made it, gone by now.
            self.journal.archive(record, "simulated job of an earlier run; simulated again")
            return None
        if record.state == "submitting":
            record = self.journal.advance(
                record,
                "in_doubt",
                error="motionflow stopped while submitting; the job may have been charged",
            )
        if record.state == "in_doubt":
            if self.free or self.options.resubmit_in_doubt:
                why = "simulated" if self.free else "resubmitted with --resubmit-in-doubt"
                self.journal.archive(record, f"{why} (same Idempotency-Key)")
                return None
            raise ProviderError(_in_doubt_message(spec.label, record))
        if record.state == "failed":
            if self.options.retry_failed or self.free:
                self.journal.archive(record, "retried with --retry-failed")
                return None
            msg = (
                f"{spec.label}: EmpirioLabs job {record.job_id} failed: {record.error}. It is not "
                "submitted again by itself; run with --retry-failed to submit it again (it is "
                f"charged again, about ${record.estimated_usd:.2f})"
            )
            raise ProviderError(msg)
        if record.state == "lost":
            if self.options.resubmit_lost or self.free:
                self.journal.archive(record, "resubmitted after the result was lost")
                return None
            msg = (
                f"{spec.label}: the result of job {record.job_id} is lost ({record.error}); "
                + LOST_HINT
            )
            raise ProviderError(msg)
        return record

    def _copy_as_completed(self, record: JobRecord) -> JobRecord:
        fresh = self.journal.begin(
            record.key,
            label=record.label,
            recipe=record.recipe,
            provider=record.provider,
            request=record.request,
            idempotency_key=record.idempotency_key,
            estimated_usd=0.0,
            stage=record.stage,
            attempt=record.attempt,
            redownload=True,
        )
        fresh = self.journal.advance(fresh, "submitted", job_id=record.job_id)
        return self.journal.advance(
            fresh, "completed", output_urls=record.output_urls, actual_usd=None
        )

    def _attempt(self, key: str) -> tuple[int, str]:
        """The attempt number and ``Idempotency-Key`` of the next submit of ``key``.

        Read from the key's last archived record, so a crash between archiving it and
        journaling the new submit changes nothing: a submit in doubt is sent again with its
        own key; a job the user paid again for (failed, lost, or a result forgotten) gets the
        next attempt, so the service makes a new video.
        """
        last = self.journal.last_archived(key)
        if last is None:
            return 0, idempotency_key(key, 0)
        if last.state in {"in_doubt", "submitting"}:
            return last.attempt, last.idempotency_key
        return last.attempt + 1, idempotency_key(key, last.attempt + 1)

    async def _publish(self, spec: JobSpec) -> tuple[str, str]:
        if self._urls is None:
            msg = f"{spec.label}: no publisher is configured for this session"
            raise UsageError(msg)
        image, video = await asyncio.gather(self._urls.url(spec.image), self._urls.url(spec.video))
        return image, video

    async def _submit(self, client: EmpirioLabsClient, spec: JobSpec) -> JobRecord:
        if self.stopped is not None:
            msg = f"{spec.label}: not submitted: {self.stopped}"
            raise self._stop_error(msg)
        usd = 0.0 if self.free else spec.estimated_usd
        self._update(spec.stage, spec.label, spec.key, "submitting", "", usd)
        image, video = await self._publish(spec)
        body = SubmitRequest(
            model=MODEL_ID,
            prompt=spec.prompt,
            reference_image=image,
            reference_video=video,
            character_orientation=spec.character_orientation,
            mode=spec.mode,
            duration=spec.duration,
            keep_original_sound=spec.keep_original_sound,
        )
        attempt, idem = self._attempt(spec.key)
        async with self._submit_lock:  # one at a time: a 401 or 402 stops the ones behind it
            return await self._post(client, spec, body, attempt, idem)

    async def _post(
        self, client: EmpirioLabsClient, spec: JobSpec, body: SubmitRequest, attempt: int, idem: str
    ) -> JobRecord:
        if self.stopped is not None:
            msg = f"{spec.label}: not submitted: {self.stopped}"
            raise self._stop_error(msg)
        record = self.journal.begin(
            spec.key,
            label=spec.label,
            recipe=spec.recipe,
            provider=self.provider,
            request=body.to_json(),
            idempotency_key=idem,
            estimated_usd=spec.estimated_usd,
            stage=spec.stage,
            attempt=attempt,
        )
        try:
            submitted = await client.submit(body, idempotency_key=idem)
        except SubmitInDoubt as exc:
            record = self.journal.advance(record, "in_doubt", error=str(exc))
            self.in_doubt.append(record)
            if self.free:  # the simulator has nothing to lose: try once more, now
                self.journal.archive(record, "simulated: nothing to lose by submitting again")
                return await self._post(client, spec, body, attempt, idem)
            raise ProviderError(_in_doubt_message(spec.label, record)) from exc
        except RequestRejected as exc:
            self.journal.advance(record, "failed", error=str(exc))
            msg = f"{spec.label}: EmpirioLabs refused the request (nothing was charged): {exc}"
            raise ProviderError(msg) from exc
        except ServiceUnreachable as exc:
            self.journal.discard(record)  # no connection was made: nothing reached the service
            self.stopped = f"{exc} (no further jobs are submitted in this run)"
            self._stop_error = ServiceUnreachable
            raise ServiceUnreachable(f"{spec.label}: not submitted: {exc}") from exc
        except (AuthError, InsufficientCredits, ModelNotFound) as exc:
            self.journal.discard(record)  # the POST certainly charged nothing
            self.stopped = f"{exc} (no further jobs are submitted in this run)"
            msg = f"{spec.label}: not submitted, nothing was charged: {exc}"
            raise ProviderError(msg) from exc
        except (RateLimited, ProviderError) as exc:
            self.journal.discard(record)
            msg = f"{spec.label}: not submitted, nothing was charged: {exc}"
            raise ProviderError(msg) from exc
        # Cancelled (Ctrl-C) or a bug mid-POST: the record stays ``submitting``; the next
        # run treats it as in doubt.
        record = self.journal.advance(record, "submitted", job_id=submitted.job_id)
        self.submitted.append(record)
        self.emit(
            JobSubmitted(
                spec.stage, spec.label, self.provider, record.job_id or "", spec.estimated_usd
            )
        )
        return record


def _in_doubt_message(label: str, record: JobRecord) -> str:
    return (
        f"{label}: a job may already have been charged (${record.estimated_usd:.2f}) but its id "
        f"is unknown: {record.error}. It stays in doubt until you decide: `motionflow jobs` "
        "lists the account's charges around that time (with their videos); attach one with "
        f"`motionflow jobs adopt {record.key[:12]} --event ID`, or {RESUBMIT_HINT} (sent with "
        "the same Idempotency-Key)"
    )


def session_factory(
    plan: Any,
    cache: Any,
    options: GenerationOptions,
    publish: Any,
    emit: Callable[[Event], None],
) -> Callable[[], GenerationSession]:
    """Check the provider's configuration now, and return how to open the session later.

    Everything a paid run needs (API key, publisher) is checked before any stage runs, so a
    configuration mistake costs nothing; the session itself (sockets, the simulator) is
    opened only when a generation actually runs.

    Raises:
        UsageError: no API key or no publisher for a run with generations to submit.
    """
    from motionflow.publish.factory import make_publisher, publisher_spec

    provider = plan.recipe.model.provider
    env = options.env if options.env is not None else os.environ
    paid = any(p.instance.impl.paid for p in plan.to_run)
    spec = publisher_spec(provider, plan.recipe.model.publish, publish) if paid else None
    if paid and provider != "simulate":
        key = env.get("EMPIRIOLABS_API_KEY", "").strip()
        if not key:
            msg = (
                f"{plan.recipe.display}: provider empiriolabs needs an API key: set "
                "EMPIRIOLABS_API_KEY (sk-empiriolabs-...), or use provider: simulate to try the "
                "recipe for free. Nothing was submitted"
            )
            raise UsageError(msg)
        check_api_key(key)  # before any journal record: a bad key costs nothing
        check_base_url(env.get("EMPIRIOLABS_BASE_URL", "").strip() or DEFAULT_BASE_URL)

    def origin_of(digest: str) -> str | None:
        found = cache.get("origin:" + digest)
        return found if isinstance(found, str) else None

    holder: list[GenerationSession] = []

    async def client() -> EmpirioLabsClient:
        return await holder[0].client()

    publisher = (
        make_publisher(
            spec,
            project_root=plan.recipe.root,
            allow_outside_project=plan.recipe.allow_outside_project,
            origin_of=origin_of,
            client=client,
            env=env,
        )
        if spec is not None
        else None
    )

    def make() -> GenerationSession:
        if publisher is None:  # pragma: no cover - make() is only called for paid instances
            msg = "no publisher configured"
            raise UsageError(msg)
        memo = None if provider == "simulate" else cache
        session = GenerationSession(provider, cache, memo, publisher, options, emit)
        holder.append(session)
        return session

    return make
