"""One authenticated connection to the EmpirioLabs API host: send, retry, back off, redirect."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from motionflow.errors import ProviderError
from motionflow.providers.envelopes import (
    ErrorInfo,
    RateLimited,
    error_for,
    excerpt,
    parse_error,
    parse_retry_after,
)
from motionflow.providers.ratelimit import RateLimiter
from motionflow.providers.redact import Redactor
from motionflow.providers.settings import (
    DEFAULT_BASE_URL,
    check_api_key,
    check_base_url,
    odd_character,
)

__all__ = [
    "BACKOFF_BASE",
    "NEVER_SENT",
    "RETRY_AFTER_CEILING",
    "UNREACHABLE",
    "Connection",
    "ServiceUnreachable",
    "bare",
]

RETRY_AFTER_CEILING = 300.0  # a longer wait is reported, not slept through
BACKOFF_BASE = 1.0
_BACKOFF_CAP = 30.0
# Raised before a byte of the request left this machine: a retry cannot bill twice.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Until the API host has answered once, a failed connection is most likely a wrong
# EMPIRIOLABS_BASE_URL (or no network): give up after a couple of quick retries, not minutes.
UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)
_UNREACHABLE_ATTEMPTS = 3
_UNREACHABLE_DELAY_CAP = 1.0


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


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def bare(url: str | httpx.URL) -> str:
    """A URL without its query: signed URLs carry tokens that do not belong in messages."""
    return str(httpx.URL(url).copy_with(query=None, fragment=None))


class Connection:
    """Sends requests with the API key to the API host only, through the rate limiter, retried.

    The key is sent only to the API host (scheme, host and port of ``base_url``); redirects
    elsewhere are refused, and every message built here goes through :attr:`redact`.

    Args:
        http: the HTTP client (owned by the caller).
        api_key: the ``sk-empiriolabs-...`` key.
        base_url: the API root.
        limiter: the process-wide :class:`RateLimiter`; ``None`` means no limiting.
        sleep: the coroutine used for every wait (tests inject a fake).
        rng: the jitter source for backoff.
        max_attempts: attempts per request before giving up on transient errors.
        backoff_base: the first backoff step, in seconds.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        max_attempts: int = 5,
        backoff_base: float = BACKOFF_BASE,
    ) -> None:
        check_api_key(api_key)
        base = check_base_url(base_url)
        self.http = http
        self.__key = api_key
        self.redact = Redactor(api_key)
        self.base_url = str(base)
        self._origin = _origin(base)
        self._limiter = limiter
        self.sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.max_attempts = max(max_attempts, 1)
        self._backoff_base = backoff_base
        self.reached = False
        """Whether the API host has answered at least once."""

    def __repr__(self) -> str:
        return f"Connection(base_url={self.base_url!r}, api_key='***')"

    def on_api_host(self, url: str | httpx.URL) -> bool:
        """Whether ``url`` is on the API host (the only place the key may go)."""
        try:
            return _origin(httpx.URL(url)) == self._origin
        except httpx.InvalidURL:
            return False

    def unreachable_delay(self, exc: BaseException, attempt: int) -> float:
        """The delay before retrying a connection that failed, or raise when it is pointless.

        Before the API host has answered once, a failed connection is tried
        ``_UNREACHABLE_ATTEMPTS`` times, quickly, then reported naming the base URL.

        Raises:
            ServiceUnreachable: the API host was never reached and the quick retries are spent.
        """
        if self.reached:
            return self.backoff(attempt)
        if attempt + 1 >= min(self.max_attempts, _UNREACHABLE_ATTEMPTS):
            cause = self.redact(_unreachable_cause(exc))
            msg = (
                f"cannot reach EmpirioLabs at {self.base_url!r}: {cause} (tried {attempt + 1} "
                "times); nothing was sent, so nothing was charged. Check EMPIRIOLABS_BASE_URL "
                f"(its default is {DEFAULT_BASE_URL!r}) and the network"
            )
            raise ServiceUnreachable(msg) from exc
        return min(self.backoff(attempt), _UNREACHABLE_DELAY_CAP)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter above half the step."""
        step = min(self._backoff_base * 2**attempt, _BACKOFF_CAP)
        return float(step * self._rng.uniform(0.5, 1.0))

    async def wait_rate_limited(self, response: httpx.Response, attempt: int) -> float:
        delay = parse_retry_after(response.headers.get("Retry-After"))
        if delay is None:
            delay = self.backoff(attempt)
        elif delay > RETRY_AFTER_CEILING:
            msg = (
                f"EmpirioLabs rate limit: the service asks to wait {delay:.0f} s "
                f"(more than {RETRY_AFTER_CEILING:.0f} s); try again later"
            )
            raise RateLimited(msg)
        if self._limiter is not None:
            self._limiter.penalise(delay)
        return delay

    async def send(
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
        if not self.on_api_host(url):  # defensive: every caller builds API-host URLs
            msg = f"refusing to send the API key to {bare(url)!r}: not the API host"
            raise ProviderError(msg)
        for name, value in (headers or {}).items():
            problem = next(filter(None, map(odd_character, value.replace(" ", ""))), None)
            if problem is not None:
                # httpx would refuse it while sending, which looks like a request in flight.
                msg = f"refusing to send the {name} header: it contains {problem}; nothing was sent"
                raise ProviderError(msg)
        all_headers = {
            "Authorization": f"Bearer {self.__key}",
            "Accept": "application/json",
            **(headers or {}),
        }
        request = self.http.build_request(
            method, url, json=json, params=params, headers=all_headers, files=files
        )
        for _ in range(4):
            stamp = await self._limiter.acquire(priority) if self._limiter is not None else None
            try:
                response = await self.http.send(request, follow_redirects=False)
                self.reached = True
                await response.aread()
            finally:
                if self._limiter is not None and stamp is not None:
                    self._limiter.sent(stamp)
            location = response.headers.get("Location")
            if not response.is_redirect or method != "GET" or location is None:
                return response
            target = response.url.join(location)
            if not self.on_api_host(target):
                msg = (
                    f"EmpirioLabs redirected {bare(request.url)!r} to another host "
                    f"({bare(target)!r}); not followed, so the API key stays on the API host"
                )
                raise ProviderError(msg)
            request = self.http.build_request(method, target, headers=all_headers)
        msg = f"too many redirects from {bare(url)!r}"
        raise ProviderError(msg)

    def error_info(self, response: httpx.Response) -> ErrorInfo:
        """The error envelope of ``response``, every field of it free of the key."""
        return parse_error(
            response.status_code, response.reason_phrase, response.content, redact=self.redact
        )

    def api_error(self, response: httpx.Response, what: str) -> ProviderError:
        return error_for(response.status_code, what, self.error_info(response))

    async def get_json(
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
        for attempt in range(self.max_attempts):
            try:
                response = await self.send(
                    method, url, params=params, files=files, priority=priority
                )
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.UnsupportedProtocol):
                    raise ProviderError(self.redact(f"cannot {what}: {exc}")) from exc
                problem = self.redact(f"{type(exc).__name__}: {exc}")
                if isinstance(exc, UNREACHABLE):
                    delay = self.unreachable_delay(exc, attempt)
                else:
                    delay = self.backoff(attempt)
            else:
                status = response.status_code
                if status == 429:
                    problem = "HTTP 429 (rate limited)"
                    delay = await self.wait_rate_limited(response, attempt)
                elif status >= 500:
                    problem = f"HTTP {status}: {self.error_info(response).message}"
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    delay = min(retry_after or self.backoff(attempt), RETRY_AFTER_CEILING)
                elif response.is_success:
                    try:
                        return response, response.json()
                    except ValueError:
                        problem = "a malformed JSON body: " + excerpt(
                            response.content, redact=self.redact
                        )
                        delay = self.backoff(attempt)
                else:
                    return response, None
            if attempt + 1 < self.max_attempts:
                await self.sleep(delay)
        msg = (
            f"cannot {what} at {self.base_url!r}: {problem} (after {self.max_attempts} "
            "attempts); try again later"
        )
        raise ProviderError(msg)
