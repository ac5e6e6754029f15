"""The async EmpirioLabs client: submit (never pay twice), poll, wait, download, usage.

The HTTP plumbing (the key, the rate limiter, retries, redirects) is
:mod:`~motionflow.providers.connection`; the settings checks are
:mod:`~motionflow.providers.settings`; downloads are :mod:`~motionflow.providers.download`.
Their public names are re-exported here, where callers have always imported them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import httpx

from motionflow.errors import ProviderError, UsageError
from motionflow.providers.connection import (
    BACKOFF_BASE,
    NEVER_SENT,
    UNREACHABLE,
    Connection,
    ServiceUnreachable,
    bare,
)
from motionflow.providers.download import download
from motionflow.providers.envelopes import (
    AuthError,
    InsufficientCredits,
    JobNotFound,
    JobTimeout,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    SubmitInDoubt,
    SubmitRequest,
    Submitted,
    UsageEvent,
    UsageRead,
    excerpt,
    parse_time,
)
from motionflow.providers.ratelimit import RateLimiter
from motionflow.providers.settings import (
    DEFAULT_BASE_URL,
    check_api_key,
    check_base_url,
)
from motionflow.providers.status import Job, is_queued, parse_job, poll_interval
from motionflow.providers.usage_pages import USAGE_PAGE_BUDGET, read_usage

__all__ = [
    "DEFAULT_BASE_URL",
    "USAGE_PAGE_BUDGET",
    "AuthError",
    "EmpirioLabsClient",
    "InsufficientCredits",
    "Job",
    "JobNotFound",
    "JobTimeout",
    "ModelNotFound",
    "RateLimited",
    "RequestRejected",
    "ServiceUnreachable",
    "SubmitInDoubt",
    "SubmitRequest",
    "Submitted",
    "UsageEvent",
    "UsageRead",
    "check_api_key",
    "check_base_url",
]

_SUBMIT = "/v1/videos/generations"

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _scrubbed(
    method: Callable[Concatenate[EmpirioLabsClient, _P], Awaitable[_R]],
) -> Callable[Concatenate[EmpirioLabsClient, _P], Coroutine[Any, Any, _R]]:
    """The boundary of a public method: no exception leaves it showing the key.

    Messages are built from redacted text already; this also covers the chained causes (an
    httpx error quoting a header) and anything a future message forgets.
    """

    @functools.wraps(method)
    async def guarded(self: EmpirioLabsClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(self, *args, **kwargs)
        except Exception as exc:
            self._redact.scrub(exc)
            raise

    return guarded


class EmpirioLabsClient:
    """Talks to the EmpirioLabs video API over an injected ``httpx.AsyncClient``.

    The API key is sent only to the API host (scheme, host and port of ``base_url``); output
    URLs, foreign poll URLs and redirects elsewhere never see it, and no message or ``repr``
    contains it.

    Args:
        http: the HTTP client (owned by the caller).
        api_key: the ``sk-empiriolabs-...`` key.
        base_url: the API root.
        limiter: the process-wide :class:`RateLimiter`; ``None`` means no limiting.
        sleep: the coroutine used for every wait (tests inject a fake).
        clock: monotonic seconds, for job timeouts.
        rng: the jitter source for backoff and polling.
        max_attempts: attempts per request before giving up on transient errors.
        poll_seconds: the first poll interval (later ones grow to three times it); backoff
            steps shrink with it when it is under the contract's 5 s.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        max_attempts: int = 5,
        poll_seconds: float = 5.0,
    ) -> None:
        if not poll_seconds > 0:
            msg = f"the poll interval must be a positive number of seconds, not {poll_seconds!r}"
            raise UsageError(msg)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._conn = Connection(
            http,
            api_key=api_key,
            base_url=base_url,
            limiter=limiter,
            sleep=sleep,
            rng=self._rng,
            max_attempts=max_attempts,
            backoff_base=BACKOFF_BASE * min(1.0, poll_seconds / 5.0),
        )
        self._redact = self._conn.redact
        self.base_url = self._conn.base_url
        self._clock = clock
        self._poll_seconds = poll_seconds
        self._unknown: set[str] = set()
        self.warnings: list[str] = []
        """Things worth telling the user (unknown statuses, each once); never printed here."""
        self.on_job: Callable[[Job], object] | None = None
        """Called with every job observation a poll makes (progress displays)."""

    @classmethod
    def from_env(
        cls,
        http: httpx.AsyncClient,
        *,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> EmpirioLabsClient:
        """Build a client from ``EMPIRIOLABS_API_KEY`` and ``EMPIRIOLABS_BASE_URL``.

        Args:
            http: the HTTP client.
            env: the environment to read (defaults to ``os.environ``).
            **kwargs: passed on to the constructor (``limiter``, ``sleep``, ...).

        Raises:
            UsageError: ``EMPIRIOLABS_API_KEY`` is not set, or is not a possible key (see
                :func:`check_api_key`; surrounding whitespace is ignored).
        """
        source = os.environ if env is None else env
        key = source.get("EMPIRIOLABS_API_KEY", "").strip()
        if not key:
            msg = (
                "no EmpirioLabs API key: set EMPIRIOLABS_API_KEY (a key like "
                "sk-empiriolabs-...), or run offline with the simulator"
            )
            raise UsageError(msg)
        base = source.get("EMPIRIOLABS_BASE_URL", "").strip() or DEFAULT_BASE_URL
        return cls(http, api_key=key, base_url=base, **kwargs)

    def __repr__(self) -> str:
        return f"EmpirioLabsClient(base_url={self.base_url!r}, api_key='***')"

    # -- plumbing ---------------------------------------------------------------------------

    def _warn(self, text: str) -> None:
        self.warnings.append(self._redact(text))

    # -- the API ----------------------------------------------------------------------------

    @_scrubbed
    async def submit(self, body: SubmitRequest, *, idempotency_key: str) -> Submitted:
        """Submit a billable job; never sent twice unless it certainly did not arrive.

        Retried only after errors raised before the request left (connection refused, DNS or
        TLS failure, connect timeout) and on HTTP 429 (after ``Retry-After``).

        Args:
            body: the request.
            idempotency_key: sent as ``Idempotency-Key``; journal it before calling.

        Raises:
            SubmitInDoubt: the outcome is unknown (read timeout, reset after sending, 5xx,
                an unreadable 2xx); the job may be charged, so do not resend.
            AuthError: HTTP 401.
            InsufficientCredits: HTTP 402.
            ModelNotFound: HTTP 404 ``model_not_found``.
            RequestRejected: HTTP 400/422.
            RateLimited: 429 persisted (nothing was charged).
            ProviderError: anything else; nothing was charged.
        """
        url = self.base_url + _SUBMIT
        what = f"submit a {body.model!r} job"
        problem = ""
        for attempt in range(self._conn.max_attempts):
            sent_at = datetime.now(UTC)
            try:
                response = await self._conn.send(
                    "POST",
                    url,
                    json=body.to_json(),
                    headers={"Idempotency-Key": idempotency_key},
                    priority=(0.0,),
                )
            except NEVER_SENT as exc:
                problem = self._redact(f"{type(exc).__name__}: {exc}")
                if isinstance(exc, UNREACHABLE):
                    delay = self._conn.unreachable_delay(exc, attempt)
                else:
                    delay = self._conn.backoff(attempt)
            except httpx.UnsupportedProtocol as exc:
                raise ProviderError(self._redact(f"cannot {what}: {exc}")) from exc
            except httpx.TransportError as exc:
                reason = self._redact(f"{type(exc).__name__}: {exc}")
                raise SubmitInDoubt.after(reason, idempotency_key, sent_at) from exc
            else:
                if response.status_code != 429:
                    return self._accepted(response, body.model, idempotency_key, sent_at)
                problem = "HTTP 429 (rate limited)"
                delay = await self._conn.wait_rate_limited(response, attempt)
            if attempt + 1 < self._conn.max_attempts:
                await self._conn.sleep(delay)
        msg = (
            f"cannot {what} at {self.base_url!r}: {problem} after {self._conn.max_attempts} "
            "attempts; the request never got through, so nothing was charged; try again later"
        )
        raise (RateLimited if problem.startswith("HTTP 429") else ProviderError)(msg)

    def _accepted(
        self, response: httpx.Response, model: str, idempotency_key: str, sent_at: datetime
    ) -> Submitted:
        """The job a submit answer announces, or the exception it means."""
        status = response.status_code
        if status >= 500:
            reason = f"HTTP {status}: {self._conn.error_info(response).message}"
            raise SubmitInDoubt.after(reason, idempotency_key, sent_at)
        if response.is_success:
            try:
                data = response.json()
            except ValueError:
                data = None
            job_id = (data.get("job_id") or data.get("id")) if isinstance(data, dict) else None
            if not isinstance(job_id, str | int) or isinstance(job_id, bool) or job_id == "":
                reason = f"HTTP {status} without a job id: " + excerpt(
                    response.content, redact=self._redact
                )
                raise SubmitInDoubt.after(reason, idempotency_key, sent_at)
            assert isinstance(data, dict)
            poll_url = data.get("poll_url")
            return Submitted(
                job_id=str(job_id),
                status=str(data.get("status") or "submitted"),
                poll_url=poll_url if isinstance(poll_url, str) and poll_url else None,
                created_at=parse_time(data.get("created_at")),
            )
        info = self._conn.error_info(response)
        if status == 404:
            message = info.message
            if info.code == "model_not_found" or "model" in message.lower():
                msg = f"EmpirioLabs has no model {model!r}: {message}"
                raise ModelNotFound(msg)
            msg = (
                f"{bare(response.url)!r} does not exist (HTTP 404: {message}); "
                "check EMPIRIOLABS_BASE_URL"
            )
            raise ProviderError(msg)
        if response.is_redirect:
            msg = (
                f"EmpirioLabs answered the submit with a redirect (HTTP {status}); it was not "
                "followed and nothing was charged; check EMPIRIOLABS_BASE_URL"
            )
            raise ProviderError(msg)
        raise self._conn.api_error(response, f"submit a {model!r} job")

    def _job_url(self, job_id: str, poll_url: str | None) -> str:
        if poll_url:
            target = httpx.URL(self.base_url).join(poll_url)
            if self._conn.on_api_host(target):
                return str(target)
        # Never the key to another host: poll the documented path instead.
        return f"{self.base_url}/v1/jobs/{quote(job_id, safe='')}"

    @_scrubbed
    async def poll(self, job_id: str, *, poll_url: str | None = None, since: float = 0.0) -> Job:
        """Read a job once.

        Args:
            job_id: the job id.
            poll_url: the submit's ``poll_url``; used only when it is on the API host.
            since: when waiting for the job began (monotonic); when the rate limit is
                saturated, polls of jobs waited on longest go first.

        Raises:
            JobNotFound: HTTP 404 (unknown, or expired an hour after completion).
            ProviderError: a completed job without an output URL, or the service kept failing.
        """
        what = f"poll job {job_id!r}"
        response, data = await self._conn.get_json(
            self._job_url(job_id, poll_url), what=what, priority=(1.0, since)
        )
        if data is None:
            if response.status_code == 404:
                raise JobNotFound(job_id)
            raise self._conn.api_error(response, what)
        if not isinstance(data, dict):
            msg = f"cannot {what}: the body is not a JSON object: " + excerpt(
                response.content, redact=self._redact
            )
            raise ProviderError(msg)
        job = parse_job(data, job_id)
        # What the service says about a job ends up in messages and the journal: no key there.
        error = self._redact(job.error) if job.error is not None else None
        job = replace(job, raw_status=self._redact(job.raw_status), error=error)
        if self.on_job is not None:
            self.on_job(job)
        if not job.known_status and job.raw_status not in self._unknown:
            self._unknown.add(job.raw_status)
            self._warn(
                f"job {job_id!r} reports an unknown status {job.raw_status!r}; "
                "treating it as still running"
            )
        if job.state == "succeeded" and not job.output_urls:
            msg = (
                f"job {job_id!r} completed but its result names no output URL; the job is "
                "billed: keep the job id and report it to EmpirioLabs"
            )
            raise ProviderError(msg)
        return job

    @_scrubbed
    async def wait(
        self,
        job_id: str,
        *,
        timeout: float,
        on_progress: Callable[[Job], object] | None = None,
        poll_url: str | None = None,
    ) -> Job:
        """Poll until the job succeeds or fails, on the :func:`poll_interval` schedule.

        Args:
            job_id: the job id.
            timeout: seconds the job may run once it left the queue (queued time is free).
            on_progress: called with every observation.
            poll_url: the submit's ``poll_url`` (used only on the API host).

        Returns:
            The final observation, ``succeeded`` or ``failed`` (failed jobs are returned,
            not raised, so the caller can journal them).

        Raises:
            JobTimeout: the job ran longer than ``timeout``.
        """
        started: float | None = None
        attempt = 0
        since = self._clock()
        while True:
            job = await self.poll(job_id, poll_url=poll_url, since=since)
            if on_progress is not None:
                on_progress(job)
            if job.state != "running":
                return job
            now = self._clock()
            if not is_queued(job.raw_status):
                if started is None:
                    started = now
                elif now - started >= timeout:
                    raise JobTimeout(job_id, timeout)
            await self._conn.sleep(poll_interval(attempt, self._rng, first=self._poll_seconds))
            attempt += 1

    @_scrubbed
    async def usage(
        self,
        since: datetime,
        *,
        model: str | None = None,
        status: str | None = None,
        limit: int = 100,
        max_pages: int = USAGE_PAGE_BUDGET,
    ) -> UsageRead:
        """Usage events since ``since``, newest first, over this client's connection.

        See :func:`motionflow.providers.usage_pages.read_usage` for the arguments and for
        when a read stops short (``complete=False``).
        """
        return await read_usage(
            self._conn, since, model=model, status=status, limit=limit, max_pages=max_pages
        )

    @_scrubbed
    async def upload(self, path: Path, *, content_type: str) -> str:
        """Upload a local file with ``POST /v1/files/upload``; nothing is billed.

        Returns:
            The URL the service gave for it, else its storage path.

        Raises:
            ProviderError: the upload was refused or kept failing.
        """
        what = f"upload {path.name!r}"
        url = self.base_url + "/v1/files/upload"
        files = {"file": (path.name, path.read_bytes(), content_type)}
        response, body = await self._conn.get_json(
            url, what=what, method="POST", files=files, priority=(0.0,)
        )
        if body is None:
            raise self._conn.api_error(response, what)
        found = body.get("url") or body.get("path") if isinstance(body, dict) else None
        if isinstance(found, str) and found:
            return found
        msg = f"cannot {what}: the answer names no url or path: " + excerpt(
            response.content, redact=self._redact
        )
        raise ProviderError(msg)

    @_scrubbed
    async def download(self, url: str, dest: Path, *, max_bytes: int) -> int:
        """Stream an output video to ``dest``, without the key; returns the bytes written.

        See :func:`motionflow.providers.download.download` for retries and errors.
        """
        return await download(self._conn, url, dest, max_bytes=max_bytes)
