"""The async EmpirioLabs client: submit (never pay twice), poll, wait, download, usage."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import httpx

from motionflow.errors import CacheError, ProviderError, UsageError
from motionflow.providers.envelopes import (
    AuthError,
    ErrorInfo,
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
    error_for,
    excerpt,
    parse_error,
    parse_retry_after,
    parse_time,
    parse_usage,
)
from motionflow.providers.ratelimit import RateLimiter
from motionflow.providers.redact import Redactor
from motionflow.providers.status import Job, is_queued, parse_job, poll_interval

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

DEFAULT_BASE_URL = "https://api.empiriolabs.ai"
USAGE_PAGE_BUDGET = 250
"""Usage pages read at most in one :meth:`EmpirioLabsClient.usage` call (each one request)."""
_SUBMIT = "/v1/videos/generations"
_RETRY_AFTER_CEILING = 300.0  # a longer wait is reported, not slept through
_BACKOFF_BASE = 1.0
_BACKOFF_CAP = 30.0
_CHUNK = 1 << 16
# Raised before a byte of the request left this machine: a retry cannot bill twice.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Until the API host has answered once, a failed connection is most likely a wrong
# EMPIRIOLABS_BASE_URL (or no network): give up after a couple of quick retries, not minutes.
_UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)
_UNREACHABLE_ATTEMPTS = 3
_UNREACHABLE_DELAY_CAP = 1.0
_KEY_ENV = "EMPIRIOLABS_API_KEY"
_KEY_MIN = 8
_KEY_MAX = 512
_NAMED = {"\n": "a line break", "\r": "a line break", " ": "a space", "\t": "a tab"}


def _odd_character(char: str) -> str | None:
    """What is wrong with ``char`` in a header value, or ``None`` if it is printable ASCII."""
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if char.isspace():
        return f"a whitespace character (U+{code:04X})"
    if code < 0x20 or code == 0x7F:
        return f"a control character (U+{code:04X})"
    if 0x2010 <= code <= 0x201F:
        return f"a typographic dash or quote (U+{code:04X}; pasted from a document?)"
    if code > 0x7E:
        return f"a non-ASCII character (U+{code:04X})"
    return None


class ServiceUnreachable(ProviderError):  # noqa: N818 - the name says it
    """No connection to the API host could be made: refused, no DNS answer, connect timeout.

    Nothing reached the service, so nothing was charged. Exit code 2, like any setting to fix
    before running again (usually ``EMPIRIOLABS_BASE_URL``, or the network).
    """

    exit_code = 2


def _unreachable_cause(exc: BaseException) -> str:
    """Why a connection failed, in words, from the OS error under the httpx one."""
    import socket

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "its host name does not resolve (DNS)"
        if isinstance(seen, ConnectionRefusedError):
            return "the connection was refused: nothing listens there"
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    if isinstance(exc, httpx.ConnectTimeout) or "timed out" in text:
        return "the connection timed out"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "its host name does not resolve (DNS)"
    if "refused" in text:
        return "the connection was refused: nothing listens there"
    return f"the connection failed ({type(exc).__name__}: {exc})"


def check_base_url(base_url: str) -> httpx.URL:
    """``base_url`` (``EMPIRIOLABS_BASE_URL``) as a URL, once it is proven http(s) with a host.

    Raises:
        UsageError: it is not a URL, or not an http(s) one with a host.
    """
    try:
        base = httpx.URL(base_url.rstrip("/"))
    except (httpx.InvalidURL, TypeError) as exc:
        msg = f"the EmpirioLabs base URL {base_url!r} is not a URL; fix EMPIRIOLABS_BASE_URL"
        raise UsageError(msg) from exc
    if base.scheme not in {"http", "https"} or not base.host:
        msg = (
            f"the EmpirioLabs base URL {base_url!r} must be an http(s) URL with a host; "
            "fix EMPIRIOLABS_BASE_URL"
        )
        raise UsageError(msg)
    return base


def check_api_key(value: str) -> None:
    """Check that ``value`` can be an EmpirioLabs API key, without ever showing it.

    A key is 8 to 512 printable ASCII characters without whitespace. Call this on the key as
    it will be sent (:meth:`EmpirioLabsClient.from_env` strips surrounding whitespace from
    ``EMPIRIOLABS_API_KEY`` first) before anything is journaled: a key that cannot go into an
    HTTP header fails inside httpx, after the job was recorded as being submitted.

    Raises:
        UsageError: the key is empty, too short or long, or holds a character that cannot be
            in a key; the message names the problem and its position (1 is the first
            character), never the key.
    """
    fix = "copy the key again from the EmpirioLabs dashboard and set it alone"
    if not value:
        msg = f"{_KEY_ENV} is empty; set it to your key (sk-empiriolabs-...)"
        raise UsageError(msg)
    for position, char in enumerate(value, start=1):
        problem = _odd_character(char)
        if problem is not None:
            msg = (
                f"{_KEY_ENV} contains {problem} at position {position} of {len(value)}; "
                f"a key is printable ASCII without spaces: {fix}"
            )
            raise UsageError(msg)
    if not _KEY_MIN <= len(value) <= _KEY_MAX:
        size = "short" if len(value) < _KEY_MIN else "long"
        msg = (
            f"{_KEY_ENV} is too {size} to be an API key ({len(value)} characters, expected "
            f"{_KEY_MIN}..{_KEY_MAX}); {fix}"
        )
        raise UsageError(msg)


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


def _next_page(data: object, page: list[UsageEvent]) -> tuple[str | None, bool]:
    """The cursor of the page after a usage page, and whether the page says there is one.

    Only a ``has_more`` that clearly says no (``false``, ``0``, ``"false"``) ends the read;
    without one (absent or null), a ``next_cursor`` means more; any other value means more,
    since taking a cut list for the whole is the costly mistake. The cursor is
    ``next_cursor``, else the last event's id.
    """
    if not isinstance(data, dict):
        return None, False
    raw = data.get("next_cursor")
    cursor = str(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    flag = data.get("has_more")
    if flag is None:
        more = bool(cursor)
    else:
        said = flag.strip().lower() if isinstance(flag, str) else flag
        more = not (said is False or said == 0 or said in ("false", "0", "no", ""))
    if not cursor and page:
        cursor = page[-1].event_id or ""
    return cursor or None, more


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _bare(url: str | httpx.URL) -> str:
    """A URL without its query: signed URLs carry tokens that do not belong in messages."""
    return str(httpx.URL(url).copy_with(query=None, fragment=None))


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
        check_api_key(api_key)
        base = check_base_url(base_url)
        self._http = http
        self.__key = api_key
        self._redact = Redactor(api_key)
        self.base_url = str(base)
        self._origin = _origin(base)
        self._limiter = limiter
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._max_attempts = max(max_attempts, 1)
        if not poll_seconds > 0:
            msg = f"the poll interval must be a positive number of seconds, not {poll_seconds!r}"
            raise UsageError(msg)
        self._poll_seconds = poll_seconds
        self._backoff_base = _BACKOFF_BASE * min(1.0, poll_seconds / 5.0)
        self._unknown: set[str] = set()
        self._reached = False  # the API host answered at least once
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

    def _on_api_host(self, url: str | httpx.URL) -> bool:
        try:
            return _origin(httpx.URL(url)) == self._origin
        except httpx.InvalidURL:
            return False

    def _unreachable(self, exc: BaseException, attempt: int) -> float:
        """The delay before retrying a connection that failed, or raise when it is pointless.

        Before the API host has answered once, a failed connection is tried
        ``_UNREACHABLE_ATTEMPTS`` times, quickly, then reported naming the base URL.

        Raises:
            ServiceUnreachable: the API host was never reached and the quick retries are spent.
        """
        if self._reached:
            return self._backoff(attempt)
        if attempt + 1 >= min(self._max_attempts, _UNREACHABLE_ATTEMPTS):
            cause = self._redact(_unreachable_cause(exc))
            msg = (
                f"cannot reach EmpirioLabs at {self.base_url!r}: {cause} (tried {attempt + 1} "
                "times); nothing was sent, so nothing was charged. Check EMPIRIOLABS_BASE_URL "
                f"(its default is {DEFAULT_BASE_URL!r}) and the network"
            )
            raise ServiceUnreachable(msg) from exc
        return min(self._backoff(attempt), _UNREACHABLE_DELAY_CAP)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter above half the step."""
        step = min(self._backoff_base * 2**attempt, _BACKOFF_CAP)
        return float(step * self._rng.uniform(0.5, 1.0))

    async def _wait_rate_limited(self, response: httpx.Response, attempt: int) -> float:
        delay = parse_retry_after(response.headers.get("Retry-After"))
        if delay is None:
            delay = self._backoff(attempt)
        elif delay > _RETRY_AFTER_CEILING:
            msg = (
                f"EmpirioLabs rate limit: the service asks to wait {delay:.0f} s "
                f"(more than {_RETRY_AFTER_CEILING:.0f} s); try again later"
            )
            raise RateLimited(msg)
        if self._limiter is not None:
            self._limiter.penalise(delay)
        return delay

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        priority: tuple[float, ...] = (1.0,),
    ) -> httpx.Response:
        """Send one API request with the key, after the limiter; same-host redirects only.

        ``priority`` orders this request among those waiting for the rate limiter: submits
        ``(0,)``, polls ``(1, job start)`` so older jobs go first, others ``(2,)``.
        """
        if not self._on_api_host(url):  # defensive: every caller builds API-host URLs
            msg = f"refusing to send the API key to {_bare(url)!r}: not the API host"
            raise ProviderError(msg)
        for name, value in (headers or {}).items():
            problem = next(filter(None, map(_odd_character, value.replace(" ", ""))), None)
            if problem is not None:
                # httpx would refuse it while sending, which looks like a request in flight.
                msg = f"refusing to send the {name} header: it contains {problem}; nothing was sent"
                raise ProviderError(msg)
        all_headers = {
            "Authorization": f"Bearer {self.__key}",
            "Accept": "application/json",
            **(headers or {}),
        }
        request = self._http.build_request(
            method, url, json=json, params=params, headers=all_headers, files=files
        )
        for _ in range(4):
            stamp = await self._limiter.acquire(priority) if self._limiter is not None else None
            try:
                response = await self._http.send(request, follow_redirects=False)
                self._reached = True
                await response.aread()
            finally:
                if self._limiter is not None and stamp is not None:
                    self._limiter.sent(stamp)
            location = response.headers.get("Location")
            if not response.is_redirect or method != "GET" or location is None:
                return response
            target = response.url.join(location)
            if not self._on_api_host(target):
                msg = (
                    f"EmpirioLabs redirected {_bare(request.url)!r} to another host "
                    f"({_bare(target)!r}); not followed, so the API key stays on the API host"
                )
                raise ProviderError(msg)
            request = self._http.build_request(method, target, headers=all_headers)
        msg = f"too many redirects from {_bare(url)!r}"
        raise ProviderError(msg)

    def _error_info(self, response: httpx.Response) -> ErrorInfo:
        """The error envelope of ``response``, every field of it free of the key."""
        return parse_error(
            response.status_code, response.reason_phrase, response.content, redact=self._redact
        )

    def _api_error(self, response: httpx.Response, what: str) -> ProviderError:
        return error_for(response.status_code, what, self._error_info(response))

    async def _get_json(
        self,
        url: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        method: str = "GET",
        files: dict[str, tuple[str, bytes, str]] | None = None,
        priority: tuple[float, ...] = (2.0,),
    ) -> tuple[httpx.Response, Any]:
        """GET an API URL, retrying 429, 5xx, timeouts, connection errors and bad JSON.

        Also used for uploads (``method="POST"`` with ``files``): they are never billed, so
        sending one again is safe.

        Returns:
            The final response and its JSON body (``None`` for a non-retryable error answer,
            which the caller maps).
        """
        problem = ""
        for attempt in range(self._max_attempts):
            try:
                response = await self._send(
                    method, url, params=params, files=files, priority=priority
                )
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.UnsupportedProtocol):
                    raise ProviderError(self._redact(f"cannot {what}: {exc}")) from exc
                problem = self._redact(f"{type(exc).__name__}: {exc}")
                if isinstance(exc, _UNREACHABLE):
                    delay = self._unreachable(exc, attempt)
                else:
                    delay = self._backoff(attempt)
            else:
                status = response.status_code
                if status == 429:
                    problem = "HTTP 429 (rate limited)"
                    delay = await self._wait_rate_limited(response, attempt)
                elif status >= 500:
                    problem = f"HTTP {status}: {self._error_info(response).message}"
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    delay = min(retry_after or self._backoff(attempt), _RETRY_AFTER_CEILING)
                elif response.is_success:
                    try:
                        return response, response.json()
                    except ValueError:
                        problem = "a malformed JSON body: " + excerpt(
                            response.content, redact=self._redact
                        )
                        delay = self._backoff(attempt)
                else:
                    return response, None
            if attempt + 1 < self._max_attempts:
                await self._sleep(delay)
        msg = (
            f"cannot {what} at {self.base_url!r}: {problem} (after {self._max_attempts} "
            "attempts); try again later"
        )
        raise ProviderError(msg)

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
        for attempt in range(self._max_attempts):
            sent_at = datetime.now(UTC)
            try:
                response = await self._send(
                    "POST",
                    url,
                    json=body.to_json(),
                    headers={"Idempotency-Key": idempotency_key},
                    priority=(0.0,),
                )
            except _NEVER_SENT as exc:
                problem = self._redact(f"{type(exc).__name__}: {exc}")
                if isinstance(exc, _UNREACHABLE):
                    delay = self._unreachable(exc, attempt)
                else:
                    delay = self._backoff(attempt)
            except httpx.UnsupportedProtocol as exc:
                raise ProviderError(self._redact(f"cannot {what}: {exc}")) from exc
            except httpx.TransportError as exc:
                reason = self._redact(f"{type(exc).__name__}: {exc}")
                raise SubmitInDoubt.after(reason, idempotency_key, sent_at) from exc
            else:
                if response.status_code != 429:
                    return self._accepted(response, body.model, idempotency_key, sent_at)
                problem = "HTTP 429 (rate limited)"
                delay = await self._wait_rate_limited(response, attempt)
            if attempt + 1 < self._max_attempts:
                await self._sleep(delay)
        msg = (
            f"cannot {what} at {self.base_url!r}: {problem} after {self._max_attempts} "
            "attempts; the request never got through, so nothing was charged; try again later"
        )
        raise (RateLimited if problem.startswith("HTTP 429") else ProviderError)(msg)

    def _accepted(
        self, response: httpx.Response, model: str, idempotency_key: str, sent_at: datetime
    ) -> Submitted:
        """The job a submit answer announces, or the exception it means."""
        status = response.status_code
        if status >= 500:
            reason = f"HTTP {status}: {self._error_info(response).message}"
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
        info = self._error_info(response)
        if status == 404:
            message = info.message
            if info.code == "model_not_found" or "model" in message.lower():
                msg = f"EmpirioLabs has no model {model!r}: {message}"
                raise ModelNotFound(msg)
            msg = (
                f"{_bare(response.url)!r} does not exist (HTTP 404: {message}); "
                "check EMPIRIOLABS_BASE_URL"
            )
            raise ProviderError(msg)
        if response.is_redirect:
            msg = (
                f"EmpirioLabs answered the submit with a redirect (HTTP {status}); it was not "
                "followed and nothing was charged; check EMPIRIOLABS_BASE_URL"
            )
            raise ProviderError(msg)
        raise self._api_error(response, f"submit a {model!r} job")

    def _job_url(self, job_id: str, poll_url: str | None) -> str:
        if poll_url:
            target = httpx.URL(self.base_url).join(poll_url)
            if self._on_api_host(target):
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
        response, data = await self._get_json(
            self._job_url(job_id, poll_url), what=what, priority=(1.0, since)
        )
        if data is None:
            if response.status_code == 404:
                raise JobNotFound(job_id)
            raise self._api_error(response, what)
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
            await self._sleep(poll_interval(attempt, self._rng, first=self._poll_seconds))
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
        """Usage events since ``since``, newest first, following the pages to the last one.

        A page that says ``has_more`` is followed by asking for ``before=<next_cursor>``, or,
        without a cursor, ``before=<the id of its last event>``. The read stops short, and
        says so with ``complete=False``, when ``max_pages`` pages were read, when a page says
        ``has_more`` but gives no way to ask for the next (or the same cursor twice), or when
        a page after the first cannot be read. A partial read is not evidence that a charge
        does not exist.

        Args:
            since: the earliest event time (the submit's ``sent_at``, minus a little slack).
            model: only this model.
            status: only events with this status (as the service spells it).
            limit: events per page.
            max_pages: pages to read at most (each is one rate-limited request).

        Returns:
            The events and whether they are all there (:class:`UsageRead`).

        Raises:
            ProviderError: the first page cannot be read (nothing was read).
        """
        when = since if since.tzinfo else since.replace(tzinfo=UTC)
        params = {"from": when.isoformat(), "limit": str(limit)}
        if model:
            params["model"] = model
        if status:
            params["status"] = status
        what = "read the account usage"
        url = self.base_url + "/v1/account/usage"
        events: list[UsageEvent] = []
        budget = max(max_pages, 1)
        cursors: set[str] = set()
        pages = 0
        while pages < budget:
            try:
                response, data = await self._get_json(url, what=what, params=params)
                if data is None:
                    raise self._api_error(response, what)
            except ProviderError as exc:
                if not pages:
                    raise
                problem = f"page {pages + 1} could not be read: {self._redact(str(exc))}"
                return UsageRead(events, complete=False, pages=pages, problem=problem)
            pages += 1
            page = parse_usage(data)
            events += page
            cursor, more = _next_page(data, page)
            if not more:
                return UsageRead(events, complete=True, pages=pages)
            if cursor is None or cursor in cursors:
                problem = f"page {pages} says there is more but " + (
                    "names no next_cursor and no event id" if cursor is None else "repeats a cursor"
                )
                return UsageRead(events, complete=False, pages=pages, problem=problem)
            cursors.add(cursor)
            params = {**params, "before": cursor}
        problem = f"stopped after {pages} pages (the page budget); older events were not read"
        return UsageRead(events, complete=False, pages=pages, problem=problem)

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
        response, body = await self._get_json(
            url, what=what, method="POST", files=files, priority=(0.0,)
        )
        if body is None:
            raise self._api_error(response, what)
        found = body.get("url") or body.get("path") if isinstance(body, dict) else None
        if isinstance(found, str) and found:
            return found
        msg = f"cannot {what}: the answer names no url or path: " + excerpt(
            response.content, redact=self._redact
        )
        raise ProviderError(msg)

    @_scrubbed
    async def download(self, url: str, dest: Path, *, max_bytes: int) -> int:
        """Stream an output video to ``dest`` (temp file, fsync, rename), without the key.

        Transient failures (connection errors, timeouts, 429, 5xx) are retried; a failed
        download is never a reason to generate again.

        Returns:
            The number of bytes written.

        Raises:
            ProviderError: the URL keeps failing, answers 4xx (expired?) or exceeds
                ``max_bytes``.
            CacheError: ``dest`` cannot be written.
        """
        shown = _bare(url)
        problem = ""
        for attempt in range(self._max_attempts):
            tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
            try:
                result = await self._download_once(url, tmp, max_bytes)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                delay = self._backoff(attempt)
            else:
                if isinstance(result, int):
                    try:
                        tmp.replace(dest)
                    except OSError as exc:
                        msg = f"cannot store the download at {str(dest)!r}: {exc}"
                        raise CacheError(msg) from exc
                    return result
                problem, delay = result
            finally:
                tmp.unlink(missing_ok=True)
            if attempt + 1 < self._max_attempts:
                await self._sleep(delay)
        msg = (
            f"cannot download {shown!r}: {self._redact(problem)} (after {self._max_attempts} "
            "attempts); run again to retry the download (the job is not generated again)"
        )
        raise ProviderError(msg)

    async def _download_once(self, url: str, tmp: Path, max_bytes: int) -> int | tuple[str, float]:
        """One download attempt into ``tmp``: its size, or a transient problem and a delay."""
        shown = _bare(url)
        # No Authorization header: signed output URLs must never see the key.
        async with self._http.stream(
            "GET", url, headers={"Accept": "*/*"}, follow_redirects=True
        ) as response:
            status = response.status_code
            if status == 429 or status >= 500:
                after = parse_retry_after(response.headers.get("Retry-After"))
                delay = min(after if after is not None else self._backoff(0), _RETRY_AFTER_CEILING)
                return f"HTTP {status}", delay
            if not response.is_success:
                msg = (
                    f"cannot download {shown!r}: HTTP {status} {response.reason_phrase} "
                    "(the signed URL may have expired; output URLs last 7 days)"
                )
                raise ProviderError(msg)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                msg = f"refusing to download {shown!r}: {declared} bytes > limit {max_bytes}"
                raise ProviderError(msg)
            size = 0
            try:
                tmp.parent.mkdir(parents=True, exist_ok=True)
                with tmp.open("wb") as fh:
                    async for chunk in response.aiter_bytes(_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            msg = f"refusing to download {shown!r}: more than {max_bytes} bytes"
                            raise ProviderError(msg)
                        fh.write(chunk)
                    fh.flush()
                    with contextlib.suppress(OSError):
                        os.fsync(fh.fileno())
            except OSError as exc:
                msg = f"cannot write the download to {str(tmp.parent)!r}: {exc}"
                raise CacheError(msg) from exc
            return size
