"""One run's connection to a generation provider, and the journal protocol around every job.

A :class:`GenerationSession` owns, for the length of a run, the HTTP client, the rate limiter
(shared with other motionflow processes through the cache directory), the publisher and, for
``provider: simulate``, the in-process fake server on loopback. :meth:`GenerationSession.generate`
turns one cache key into one downloaded video while following API_CONTRACT.md's
never-pay-twice rule:

1. the ``submitting`` record is written before the POST and the job id right after it, under
   a submit lock shared by every process on the cache (so at most one submit is ever
   unaccounted for, which keeps in-doubt submits matchable against the usage API);
2. a record with a job id is polled again, never resubmitted; a completed one is downloaded
   again, never regenerated;
3. an ambiguous submit is ``in_doubt``: it is settled from the usage API when that is
   conclusive, and otherwise paid again only with ``--resubmit-in-doubt``.

The caller (the executor) holds the key's lock around :meth:`~GenerationSession.generate`, so two
processes never work on one key at once.
"""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from motionflow.cache.journal import JobRecord, Journal
from motionflow.cache.locks import key_lock
from motionflow.errors import ProviderError, UsageError
from motionflow.events import Event, JobCompleted, JobResumed, JobSubmitted, Warning
from motionflow.providers.empiriolabs import (
    AuthError,
    EmpirioLabsClient,
    InsufficientCredits,
    JobNotFound,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    SubmitInDoubt,
    SubmitRequest,
)
from motionflow.providers.envelopes import LOST_HINT, RESUBMIT_HINT
from motionflow.providers.ratelimit import RateLimiter
from motionflow.publish.base import PublishedUrls, Publisher
from motionflow.stages.base import FileArtifact

__all__ = [
    "Generated",
    "GenerationOptions",
    "GenerationSession",
    "JobSpec",
    "options_from_env",
    "session_factory",
]

MODEL_ID = "kling-v3-motion-control"
_MAX_DOWNLOAD = 2 * 1024**3
_SETTLE_SLACK = timedelta(seconds=5)
# simulate: the in-process fake server runs at this fraction of real time
_SIM_SCALE = 0.02


@dataclass(frozen=True)
class GenerationOptions:
    """How a run talks to its provider (CLI flags and ``EMPIRIOLABS_*`` settings).

    Attributes:
        resubmit_in_doubt: pay again for jobs whose submit is in doubt.
        resubmit_lost: pay again for jobs whose result expired before it was downloaded.
        retry_failed: submit again jobs the service reported as failed.
        rate_limit: API requests per minute, for every process on this cache.
        poll_seconds: the first poll interval (later ones grow to 3x it).
        job_timeout: seconds a job may run once it has left the queue.
        usage_lag: seconds after a submit before the usage API is trusted to list its charge.
        max_jobs: generations in flight at once (the rate limit is the real bound).
        env: where ``EMPIRIOLABS_API_KEY`` and ``EMPIRIOLABS_BASE_URL`` are read.
    """

    resubmit_in_doubt: bool = False
    resubmit_lost: bool = False
    retry_failed: bool = False
    rate_limit: int = 50
    poll_seconds: float = 5.0
    job_timeout: float = 1800.0
    usage_lag: float = 60.0
    max_jobs: int = 10
    env: Mapping[str, str] | None = None


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
    ``_USAGE_LAG``, ``_MAX_JOBS`` and the given CLI ``flags`` (which win).

    Raises:
        UsageError: a variable is not a valid number.
    """
    source = dict(os.environ if env is None else env)
    values: dict[str, Any] = {
        "rate_limit": int(_env_number(source, "EMPIRIOLABS_RATE_LIMIT", 50, minimum=1)),
        "poll_seconds": _env_number(source, "EMPIRIOLABS_POLL_SECONDS", 5.0, minimum=0.001),
        "job_timeout": _env_number(source, "EMPIRIOLABS_JOB_TIMEOUT", 1800.0, minimum=1),
        "usage_lag": _env_number(source, "EMPIRIOLABS_USAGE_LAG", 60.0, minimum=0),
        "max_jobs": int(_env_number(source, "EMPIRIOLABS_MAX_JOBS", 10, minimum=1)),
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    return GenerationOptions(env=source, **values)


@dataclass(frozen=True)
class Generated:
    """A downloaded generation.

    Attributes:
        path: the video, in the stage's work folder.
        record: the journal record (``completed``; the executor marks it ``stored``).
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


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC)


def _billed_seconds(usage: dict[str, Any] | None) -> float | None:
    """Billable seconds from a job's ``result.usage``, read tolerantly."""
    if not usage:
        return None
    for name in ("billable_seconds", "seconds", "duration", "units"):
        value = usage.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


class GenerationSession:
    """The provider connection of one run; create it lazily, close it with :meth:`aclose`.

    Args:
        provider: ``simulate`` (the fake server in-process, free) or ``empiriolabs``.
        cache_root: the cache directory (journal, locks, rate-limit state).
        memo: the cache's key-value table (published URLs are remembered there).
        publisher: makes local files fetchable.
        options: flags and settings.
        emit: sends events to the reporter.
    """

    def __init__(
        self,
        provider: str,
        cache_root: Path,
        memo: Any,
        publisher: Publisher,
        options: GenerationOptions,
        emit: Callable[[Event], None],
    ) -> None:
        self.provider = provider
        self.free = provider == "simulate"
        self.journal = Journal(cache_root)
        self.options = options
        self.emit = emit
        self._root = cache_root
        self._publisher = publisher
        self._urls = PublishedUrls(publisher, memo)
        self._fake: Any = None
        self._http: httpx.AsyncClient | None = None
        self._client: EmpirioLabsClient | None = None
        self._started = asyncio.Lock()
        self.stopped: str | None = None
        """Why no more jobs may be submitted this run (bad key, no credits), or None."""
        self.touched: list[JobRecord] = []
        """Every job this run worked on (submitted or resumed)."""
        self.submitted: list[JobRecord] = []
        """Jobs this run submitted (and so paid for)."""

    @property
    def charged_usd(self) -> float:
        """What this run's submits cost: ``cost.amount`` where known, else the estimate."""
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
            return self._client

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

    async def aclose(self) -> None:
        """Read what this run's jobs cost (one usage query), then close everything."""
        try:
            if self._client is not None and not self.free:
                await self._settle_costs(self._client)
        finally:
            if self._http is not None:
                await self._http.aclose()
            await self._publisher.aclose()
            if self._fake is not None:
                await asyncio.to_thread(self._fake.stop)

    async def _settle_costs(self, client: EmpirioLabsClient) -> None:
        pending = [r for r in self.touched if r.job_id and r.actual_usd is None]
        if not pending:
            return
        since = min(_parse_time(r.started_at) for r in pending) - _SETTLE_SLACK
        try:
            events = await client.usage(since, model=MODEL_ID)
        except ProviderError as exc:
            self.emit(Warning(f"could not read the charged amounts from the usage API: {exc}"))
            return
        charged = {e.job_id: e for e in events if e.job_id and e.cost_usd is not None}
        for record in pending:
            event = charged.get(record.job_id or "")
            if event is not None:
                self.journal.annotate(record, actual_usd=event.cost_usd)

    # -- one generation -------------------------------------------------------------------------
    async def generate(self, spec: JobSpec, workdir: Path) -> Generated:
        """Submit (or resume) the job of ``spec.key`` and download its video into ``workdir``.

        Raises:
            ProviderError: the job failed, is in doubt, was lost, or the service refused it;
                the message names the stage, the job id and what to do.
        """
        record = await self._resumable(spec)
        resumed = record is not None
        client = await self.client()
        if record is None:
            record = await self._submit(client, spec)
        else:
            self.emit(JobResumed(spec.stage, spec.label, record.job_id or "", record.state))
        self.touched.append(record)
        if record.state == "submitted":
            record = await self._wait(client, spec, record)
        if record.state == "completed":
            path = await self._download(client, spec, record, workdir)
            self.emit(
                JobCompleted(
                    spec.stage, spec.label, record.job_id or "", record.billed_seconds or 0.0
                )
            )
            return Generated(path, record, resumed)
        msg = f"{spec.label}: job {record.job_id} is {record.state}"  # pragma: no cover
        raise ProviderError(msg)  # pragma: no cover - every state is handled above

    def stored(self, record: JobRecord, blob: str) -> None:
        """Mark the job's video as safely in the cache."""
        if record.state == "completed":
            self.journal.advance(record, "stored", blob=blob)

    async def _resumable(self, spec: JobSpec) -> JobRecord | None:
        """The journal record to carry on with, or None to submit a new job.

        Raises:
            ProviderError: the record is failed, in doubt or lost and the user did not ask to
                pay again.
        """
        record = self.journal.get(spec.key)
        if record is None:
            return None
        if record.state == "stored":
            # The cache lost the video the journal says it stored: download it again.
            self.journal.archive(record, "the cache no longer had the video; downloading again")
            record = self._copy_as_completed(record)
        if record.state == "submitting":
            record = self.journal.advance(
                record,
                "in_doubt",
                error="motionflow stopped while submitting; the job may have been charged",
            )
        if record.state == "in_doubt":
            return await self._in_doubt(spec, record)
        if record.state == "failed":
            if self.options.retry_failed:
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
        )
        fresh = self.journal.advance(fresh, "submitted", job_id=record.job_id)
        return self.journal.advance(fresh, "completed", output_urls=record.output_urls)

    async def _in_doubt(
        self, spec: JobSpec, record: JobRecord, *, fresh: bool = False
    ) -> JobRecord | None:
        """Settle an in-doubt submit: adopt its job, free its key, or refuse to pay again.

        ``--resubmit-in-doubt`` applies to submits of earlier runs only (``fresh`` is False):
        a submit that just went into doubt is never paid again in the same run.
        """
        if self.free:
            self.journal.archive(record, "simulated: nothing to lose by submitting again")
            return None
        client = await self.client()
        async with key_lock(self._root, "submit"):  # no submit is in flight meanwhile
            verdicts = await self._settle_all(client)
            current = self.journal.get(record.key)
        if current is not None and current.state == "submitted":
            return current  # adopted from the usage API (by this or another process)
        if current is None:  # pragma: no cover - the key lock is ours
            return None
        record = current
        verdict = verdicts.get(record.key, "")
        if verdict == "not charged":
            self.journal.archive(record, "the usage API shows no charge for it")
            return None
        if self.options.resubmit_in_doubt and not fresh:
            self.journal.archive(record, "resubmitted with --resubmit-in-doubt")
            return None
        msg = (
            f"{spec.label}: a job may already have been charged (${record.estimated_usd:.2f}) "
            f"but its id is unknown: {record.error} {verdict}. Check the account's usage; "
            f"{RESUBMIT_HINT}"
        )
        raise ProviderError(msg)

    async def _settle_all(self, client: EmpirioLabsClient) -> dict[str, str]:
        """Match every in-doubt submit of this cache against the usage API's charges.

        Call it holding the submit lock: then no submit is in flight anywhere, every job
        accepted since is journaled, and the unclaimed charges (those no record names) can
        only belong to in-doubt submits. Submits are serialised by that lock, so the job of
        a submit sent at ``t`` was created after ``t`` and before the next submit was sent:
        a charge in that window, and only one, is adopted as that submit's job.

        Returns:
            For each record still in doubt, by key: ``"not charged"`` when the usage API
            lists no charge for it long enough after the submit, otherwise why it stays in
            doubt. Adopted records are ``submitted`` in the journal.
        """
        records = self.journal.all(archived=True)
        doubts = [r for r in records if r.state == "in_doubt" and r.job_id is None]
        doubts = [r for r in doubts if self.journal.get(r.key) is not None]  # not archived
        if not doubts:
            return {}
        first = min(_parse_time(r.started_at) for r in doubts) - _SETTLE_SLACK
        try:
            events = await client.usage(first, model=MODEL_ID)
        except ProviderError as exc:
            why = f"(the usage API could not be read: {exc})"
            return {r.key: why for r in doubts}
        claimed = {r.job_id for r in records if r.job_id}
        pool = [e for e in events if e.job_id not in claimed]
        if any(e.job_id is None or e.created_at is None for e in pool):
            why = "(the usage API lists charges it cannot tie to a job)"
            return {r.key: why for r in doubts}
        starts = sorted(_parse_time(r.started_at) for r in records)
        verdicts: dict[str, str] = {}
        now = datetime.now(UTC)
        for record in sorted(doubts, key=lambda r: r.started_at):
            sent = _parse_time(record.started_at)
            later = [t for t in starts if t > sent]
            until = later[0] if later else now + _SETTLE_SLACK
            mode = record.request.get("mode")
            window = [
                e
                for e in pool
                if e.created_at is not None
                and sent - _SETTLE_SLACK <= e.created_at < until
                and (e.mode is None or e.mode == mode)
            ]
            if len(window) == 1:
                pool.remove(window[0])
                self.journal.advance(record, "submitted", job_id=window[0].job_id)
                continue
            if window:
                verdicts[record.key] = f"({len(window)} charges around then could be it)"
                continue
            age = (now - sent).total_seconds()
            if age >= self.options.usage_lag:
                verdicts[record.key] = "not charged"
            else:
                wait = self.options.usage_lag - age
                verdicts[record.key] = (
                    f"(the usage API lists no charge yet; it may lag: run again in {wait:.0f} s)"
                )
        return verdicts

    async def _publish(self, spec: JobSpec) -> tuple[str, str]:
        image, video = await asyncio.gather(self._urls.url(spec.image), self._urls.url(spec.video))
        return image, video

    async def _submit(self, client: EmpirioLabsClient, spec: JobSpec) -> JobRecord:
        if self.stopped is not None:
            msg = f"{spec.label}: not submitted: {self.stopped}"
            raise ProviderError(msg)
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
        idempotency_key = f"mf-{spec.key[:32]}-{uuid.uuid4().hex[:8]}"
        async with key_lock(self._root, "submit"):
            if self.stopped is not None:
                msg = f"{spec.label}: not submitted: {self.stopped}"
                raise ProviderError(msg)
            record = self.journal.begin(
                spec.key,
                label=spec.label,
                recipe=spec.recipe,
                provider=self.provider,
                request=body.to_json(),
                idempotency_key=idempotency_key,
                estimated_usd=spec.estimated_usd,
                stage=spec.stage,
            )
            try:
                submitted = await client.submit(body, idempotency_key=idempotency_key)
            except SubmitInDoubt as exc:
                record = self.journal.advance(record, "in_doubt", error=str(exc))
            except RequestRejected as exc:
                self.journal.advance(record, "failed", error=str(exc))
                msg = f"{spec.label}: EmpirioLabs refused the request (nothing was charged): {exc}"
                raise ProviderError(msg) from exc
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
            # run treats it as in doubt and settles it from the usage API.
            else:
                record = self.journal.advance(record, "submitted", job_id=submitted.job_id)
        if record.state == "in_doubt":
            settled = await self._in_doubt(spec, record, fresh=True)
            if settled is None:  # proven not charged, or the user allows paying again
                return await self._submit(client, spec)
            record = settled
        self.submitted.append(record)
        self.emit(
            JobSubmitted(
                spec.stage, spec.label, self.provider, record.job_id or "", spec.estimated_usd
            )
        )
        return record

    async def _wait(self, client: EmpirioLabsClient, spec: JobSpec, record: JobRecord) -> JobRecord:
        assert record.job_id is not None
        try:
            job = await client.wait(record.job_id, timeout=self.options.job_timeout)
        except JobNotFound as exc:
            record = self.journal.advance(record, "lost", error=str(exc))
            if self.free:
                self.journal.archive(record, "simulated job unknown to this run's simulator")
                fresh = await self._submit(client, spec)
                return await self._wait(client, spec, fresh)
            msg = f"{spec.label}: {exc}"
            raise ProviderError(msg) from exc
        for warning in client.warnings:
            self.emit(Warning(warning))
        client.warnings.clear()
        if job.state == "failed":
            reason = job.error or "no reason given"
            self.journal.advance(record, "failed", error=reason)
            msg = (
                f"{spec.label}: EmpirioLabs job {record.job_id} failed: {reason}. Run with "
                "--retry-failed to submit it again (it is charged again)"
            )
            raise ProviderError(msg)
        billed = _billed_seconds(job.usage)
        record = self.journal.advance(record, "completed", output_urls=job.output_urls)
        if billed is not None:
            record = self.journal.annotate(record, billed_seconds=billed)
        return record

    async def _download(
        self, client: EmpirioLabsClient, spec: JobSpec, record: JobRecord, workdir: Path
    ) -> Path:
        dest = workdir / "video.mp4"
        problems = []
        for url in record.output_urls:
            try:
                await client.download(url, dest, max_bytes=_MAX_DOWNLOAD)
            except ProviderError as exc:
                problems.append(str(exc))
                continue
            return dest
        if not problems:
            problems.append("the job named no output URL")
        if any("HTTP 4" in p for p in problems) and not any("HTTP 5" in p for p in problems):
            self.journal.advance(record, "lost", error="; ".join(problems))
            hint = LOST_HINT
        else:
            hint = "run again to retry the download (the job is not generated again)"
        msg = (
            f"{spec.label}: job {record.job_id} finished but its video could not be "
            f"downloaded: {'; '.join(problems)}; {hint}"
        )
        raise ProviderError(msg)


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
    if paid and provider != "simulate" and not env.get("EMPIRIOLABS_API_KEY", "").strip():
        msg = (
            f"{plan.recipe.display}: provider empiriolabs needs an API key: set "
            "EMPIRIOLABS_API_KEY (sk-empiriolabs-...), or use provider: simulate to try the "
            "recipe for free. Nothing was submitted"
        )
        raise UsageError(msg)

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
        session = GenerationSession(provider, cache.root, memo, publisher, options, emit)
        holder.append(session)
        return session

    return make
