"""Bring a journaled job's video home: poll it, download it, check it, store it.

Everything here works from the journal record alone (job id, output URLs, times), so a job
is collected the same way by the run that submitted it, by any later run (whatever its recipe
or vars), and by ``motionflow jobs collect``.

A paid result is never written off on thin evidence. A 404 on a poll or on a signed output URL
can be transient (read-after-write lag, a CDN that has not caught up), so it is retried with
backoff for ``not_found_patience`` seconds, and a failed download polls the job again for fresh
URLs. A job is marked ``lost`` only when 404s repeat *and* its retention has certainly passed by
our own clock (:func:`retention_deadline`); until then it stays in flight and the user is told
when to try again. Downloaded bytes must probe as a video before they are stored: an HTML error
page answered with 200 is a failed download, not a paid result.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from motionflow.cache.journal import JobRecord, Journal
from motionflow.errors import MediaError, ProviderError
from motionflow.providers.empiriolabs import EmpirioLabsClient, JobNotFound
from motionflow.providers.envelopes import LOST_HINT
from motionflow.providers.status import Job

__all__ = ["COLLECT_HINT", "Collector", "JobPending", "retention_deadline"]

COLLECT_HINT = "run `motionflow jobs collect` (or any `motionflow run`) later to fetch it"
_MAX_DOWNLOAD = 2 * 1024**3
_MARGIN_CAP = 300.0  # seconds added to the retention for clock skew and rounding
_BACKOFF_CAP = 60.0
_MIN_NOT_FOUND = 3  # 404s in a row before a job may be called lost


class JobPending(ProviderError):  # noqa: N818 - the name says it
    """The job's video could not be fetched yet, but it is not lost: try again later."""


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _seen(record: JobRecord, state: str) -> datetime | None:
    for name, when in record.history:
        if name == state:
            return _parse(when)
    return None


def retention_deadline(record: JobRecord, *, retention: float, job_timeout: float) -> datetime:
    """When the service has certainly forgotten the job, by our own clock.

    The service keeps a job for ``retention`` seconds after it completes. When we saw it
    completed, that is the deadline (plus a margin for rounding and clock skew). When we never
    did, it may still have been running the last time it answered, for up to ``job_timeout``
    more, so that is added too. Without any sign of life, the submit time stands in.
    """
    margin = timedelta(seconds=min(_MARGIN_CAP, retention / 4))
    alive = [
        t
        for t in (_parse(record.alive_at), _seen(record, "submitted"), _parse(record.started_at))
        if t is not None
    ]
    last = max(alive) if alive else datetime.now(UTC)
    completed = _seen(record, "completed")
    if completed is not None:
        return max(completed, last) + timedelta(seconds=retention) + margin
    return last + timedelta(seconds=job_timeout + retention) + margin


def video_problem(path: Path) -> str | None:
    """Why the file at ``path`` is not a playable video, or None when it is one."""
    from motionflow.media.probe import probe

    try:
        info = probe(path)
    except MediaError as exc:
        return str(exc).split(". ", 1)[0]
    if not info.has_video:
        return "it has no video stream"
    if not info.duration > 0:
        return "it has no duration"
    return None


@dataclass
class Collector:
    """Polls, downloads and stores journaled jobs for one run or one ``jobs collect``.

    Args:
        client: the API client.
        journal: the journal the records live in.
        store: puts a downloaded file into the cache; returns its digest.
        blob_path: where the cache keeps a digest's bytes.
        job_timeout: seconds a job may run once it left the queue.
        retention: seconds the service keeps a job after it completes.
        not_found_patience: seconds one run keeps retrying 404s and failed downloads.
        poll_seconds: the first backoff step.
        sleep: the coroutine used for every wait.
        warn: receives things worth telling the user.
    """

    client: EmpirioLabsClient
    journal: Journal
    store: Callable[[Path], str]
    blob_path: Callable[[str], Path]
    job_timeout: float
    retention: float
    not_found_patience: float
    poll_seconds: float = 5.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    warn: Callable[[str], None] = lambda _message: None

    def _step(self, attempt: int) -> float:
        return float(min(self.poll_seconds * 2**attempt, _BACKOFF_CAP))

    def _retention_passed(self, record: JobRecord) -> tuple[bool, datetime]:
        deadline = retention_deadline(
            record, retention=self.retention, job_timeout=self.job_timeout
        )
        return datetime.now(UTC) >= deadline, deadline

    def _lost(self, record: JobRecord, label: str, evidence: str) -> ProviderError:
        self.journal.advance(record, "lost", error=evidence)
        msg = f"{label}: the result of job {record.job_id} is lost ({evidence}); {LOST_HINT}"
        return ProviderError(msg)

    def _pending(self, record: JobRecord, label: str, what: str) -> JobPending:
        _, deadline = self._retention_passed(record)
        msg = (
            f"{label}: job {record.job_id} is paid for but {what}. It is not marked lost: the "
            "service may still hold it (a 404 can be transient), and it is never paid for "
            f"again by itself; {COLLECT_HINT}. It can be called lost only after "
            f"{deadline.isoformat(timespec='seconds')}"
        )
        return JobPending(msg)

    async def collect(self, record: JobRecord, workdir: Path, label: str = "") -> Path:
        """Carry ``record`` to ``stored`` and put a copy of its video at ``workdir/video.mp4``.

        Raises:
            JobPending: not fetched yet, not lost either (the record stays in flight).
            ProviderError: the job failed, or is lost (with proof).
        """
        label = label or record.label
        dest = workdir / "video.mp4"
        if record.state == "stored" and record.blob and self.blob_path(record.blob).is_file():
            shutil.copyfile(self.blob_path(record.blob), dest)
            return dest
        if record.state == "submitted":
            record = await self._wait(record, label)
        if record.state != "completed":  # pragma: no cover - callers pass in-flight records
            msg = f"{label}: job {record.job_id} is {record.state}; nothing to collect"
            raise ProviderError(msg)
        await self._download(record, dest, label)
        self.journal.advance(record, "stored", blob=self.store(dest))
        return dest

    async def _wait(self, record: JobRecord, label: str) -> JobRecord:
        assert record.job_id is not None
        first_404: float | None = None
        misses = 0
        noted = False

        def alive(_job: Job) -> None:
            nonlocal noted
            if not noted:  # one durable note per wait: the job answered
                noted = True
                self.journal.annotate(record, alive_at=datetime.now(UTC).isoformat())

        while True:
            try:
                job = await self.client.wait(
                    record.job_id, timeout=self.job_timeout, on_progress=alive
                )
            except JobNotFound:
                misses += 1
                now = time.monotonic()
                first_404 = first_404 if first_404 is not None else now
                passed, _ = self._retention_passed(record)
                if passed and misses >= _MIN_NOT_FOUND:
                    raise self._lost(
                        record, label, f"HTTP 404 {misses} times, after its retention"
                    ) from None
                if now - first_404 >= self.not_found_patience:
                    raise self._pending(record, label, "the service answers 404 for it") from None
                await self.sleep(self._step(misses - 1))
                continue
            break
        for warning in self.client.warnings:
            self.warn(warning)
        self.client.warnings.clear()
        record.alive_at = datetime.now(UTC).isoformat()
        if job.state == "failed":
            reason = job.error or "no reason given"
            self.journal.advance(record, "failed", error=reason)
            msg = (
                f"{label}: EmpirioLabs job {record.job_id} failed: {reason}. Run with "
                "--retry-failed to submit it again (it is charged again)"
            )
            raise ProviderError(msg)
        record = self.journal.advance(record, "completed", output_urls=job.output_urls)
        billed = _billed_seconds(job.usage)
        if billed is not None:
            record = self.journal.annotate(record, billed_seconds=billed)
        return record

    async def _download(self, record: JobRecord, dest: Path, label: str) -> None:
        started = time.monotonic()
        misses = 0
        attempt = 0
        while True:
            problems = []
            for url in record.output_urls:
                try:
                    await self.client.download(url, dest, max_bytes=_MAX_DOWNLOAD)
                except ProviderError as exc:
                    problems.append(str(exc))
                    continue
                problem = video_problem(dest)
                if problem is None:
                    return
                dest.unlink(missing_ok=True)
                shown = str(httpx.URL(url).copy_with(query=None))
                problems.append(f"{shown!r} did not give a video: {problem}")
            if not record.output_urls:
                problems.append("the job named no output URL")
            if record.job_id:  # signed URLs can be refreshed: ask the job again
                try:
                    job = await self.client.poll(record.job_id)
                except JobNotFound:
                    misses += 1
                    passed, _ = self._retention_passed(record)
                    if passed and misses >= _MIN_NOT_FOUND:
                        evidence = "its video answers 4xx and the job 404, after its retention"
                        raise self._lost(record, label, evidence) from None
                except ProviderError as exc:
                    problems.append(str(exc))
                else:
                    misses = 0
                    if job.output_urls and job.output_urls != record.output_urls:
                        record = self.journal.annotate(record, output_urls=job.output_urls)
            if time.monotonic() - started >= self.not_found_patience:
                what = "its video could not be downloaded yet: " + "; ".join(problems[-3:])
                raise self._pending(record, label, what)
            await self.sleep(self._step(attempt))
            attempt += 1


def _billed_seconds(usage: dict[str, Any] | None) -> float | None:
    """Billable seconds from a job's ``result.usage``, read tolerantly."""
    if not usage:
        return None
    for name in ("billable_seconds", "seconds", "duration", "units"):
        value = usage.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None
