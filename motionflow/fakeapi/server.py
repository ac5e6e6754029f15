"""The fake EmpirioLabs server: the API contract over real loopback HTTP, with injected faults."""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import secrets
import socket
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import fields, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from motionflow.errors import UsageError
from motionflow.fakeapi.account import Account, Premises
from motionflow.fakeapi.config import FIXED_SETTINGS, FakeConfig
from motionflow.fakeapi.faults import (
    FILE_PATH,
    JOB_PATH,
    SUBMIT_PATH,
    UPLOAD_PATH,
    USAGE_PATH,
    FaultPlan,
    Faults,
    error_body,
)
from motionflow.fakeapi.handler import UNKNOWN_PATH, json_response, route, seconds_header
from motionflow.fakeapi.jobs import (
    MODEL_ID,
    ValidationFailure,
    iso,
    model_entry,
    validate_submit,
)
from motionflow.fakeapi.store import FileStore, receive_upload
from motionflow.fakeapi.usage import parse_usage_query, usage_page
from motionflow.loopback import Handler, LoopbackServer, Response

__all__ = ["FakeConfig", "FakeEmpirioLabs"]

_INTERNAL = "x-fakeapi-internal"
_CONFIG_NAMES = frozenset(f.name for f in fields(FakeConfig)) - FIXED_SETTINGS
_FAULT_NAMES = frozenset(f.name for f in fields(Faults))
_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1><p>The edge server could not reach the origin.</p>"
    b"</body></html>\n"
)


def _received_key(headers: dict[str, str]) -> str:
    """The API key a request carried (``Authorization: Bearer`` first, then ``x-api-key``)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else ""
    return given or headers.get("x-api-key", "").strip()


def _bind_problem(port: int, exc: OSError) -> str:
    """Why the server cannot listen on ``port``, and what to do instead."""
    if exc.errno == errno.EADDRINUSE:
        cause = "the port is already in use (another fake server, or another program)"
    elif exc.errno == errno.EACCES:
        cause = "permission denied (ports below 1024 need privileges)"
    else:
        cause = exc.strerror or str(exc)
    return (
        f"fake-server cannot listen on 127.0.0.1:{port}: {cause}; stop what holds it, choose"
        " another --port, or pass --port 0 to let the system pick a free one"
    )


class FakeEmpirioLabs:
    """A local stand-in for the EmpirioLabs API, served on 127.0.0.1 by a thread.

    Jobs advance by the (scaled) wall clock and are computed when read; a worker thread per
    job fetches the references and renders the output. Counters let tests see what the
    client really sent, and :meth:`charges` what the account was really billed for, which
    the usage endpoint only half tells (see :class:`FakeConfig`). Nothing is printed or logged.

    Args:
        config: how the server behaves (copied: ``arm`` changes the server's copy).

    Example:
        >>> with FakeEmpirioLabs(FakeConfig(render=False)) as fake:  # doctest: +SKIP
        ...     httpx.get(f"{fake.url}/v1/models/kling-v3-motion-control", headers=...)
    """

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = replace(config) if config is not None else FakeConfig()
        self._plan = FaultPlan(self.config.faults)
        self._lock = threading.Lock()
        self._account = Account(self.config, self._plan, self._now)
        self._requests: Counter[tuple[str, str]] = Counter()
        self._rate_limited = 0
        self._window: deque[float] = deque()
        self._offset = 0.0
        self._conns: set[socket.socket] = set()
        self._local = threading.local()
        self._internal = secrets.token_hex(16)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._httpd: LoopbackServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> str:
        """Bind 127.0.0.1, serve in a daemon thread, and return the base URL."""
        if self._httpd is not None:
            return self.url
        if self.config.store_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="motionflow-fakeapi-")
            root = Path(self._tmp.name)
        else:
            root = self.config.store_dir
        self._store = FileStore(root / "files")
        try:
            httpd = LoopbackServer(("127.0.0.1", self.config.port), Handler)
        except OSError as exc:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None
            raise UsageError(_bind_problem(self.config.port, exc)) from exc
        httpd.app = self
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        premises = Premises(self._store, root / "work", self.url, self._internal, _INTERNAL)
        self._account.open(premises)
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and clean up.

        Drops open connections, cancels late jobs not yet created, waits for the workers and
        removes temporary files.
        """
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._account.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests look at -------------------------------------------------------------
    @property
    def submissions(self) -> list[dict[str, Any]]:
        """Every accepted (billed) submit body of ours, in order (a copy); no strangers."""
        return self._account.submissions()

    @property
    def submits_by_key(self) -> Counter[str]:
        """Accepted submits by ``Idempotency-Key`` (else a digest of the body); no strangers."""
        return self._account.submits_by_key()

    @property
    def repeat_submits(self) -> int:
        """Submits answered with an earlier job by their honoured ``Idempotency-Key``."""
        return self._account.repeat_submits()

    @property
    def requests(self) -> Counter[tuple[str, str]]:
        """Requests received by (method, path template), faulted ones included."""
        with self._lock:
            return Counter(self._requests)

    @property
    def rate_limited(self) -> int:
        """How many 429s were sent."""
        with self._lock:
            return self._rate_limited

    @property
    def faults(self) -> Faults:
        """The faults still armed (a snapshot)."""
        return self._plan.current

    def arm(self, **changes: Any) -> None:
        """Change faults or settings while running, e.g. ``fake.arm(server_errors=2)``.

        Names of :class:`Faults` fields change the live faults; names of :class:`FakeConfig`
        fields (all but ``faults``, ``port``, ``store_dir``, ``time_scale``) change
        ``self.config``. Nothing changes unless every name and value is valid.

        Raises:
            TypeError: a name is neither, or a fixed setting.
            ValueError: a value is refused (e.g. a negative ``strangers_per_submit``).
        """
        unknown = sorted(set(changes) - _CONFIG_NAMES - _FAULT_NAMES)
        if unknown:
            msg = (
                f"unknown or fixed setting(s) {unknown}; faults: {sorted(_FAULT_NAMES)}; "
                f"settings: {sorted(_CONFIG_NAMES)}"
            )
            raise TypeError(msg)
        settings = {k: v for k, v in changes.items() if k in _CONFIG_NAMES}
        replace(self.config, **settings)  # runs the checks before anything changes
        self._plan.arm(**{k: v for k, v in changes.items() if k not in _CONFIG_NAMES})
        for name, value in settings.items():
            setattr(self.config, name, value)

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward by ``seconds`` of (unscaled) service time.

        Jobs progress, retention and billing lag follow; reported timestamps and the timers of
        late jobs do not.
        """
        with self._lock:
            self._offset += seconds * self.config.time_scale

    def job_ids(self) -> list[str]:
        """Ids of every job of ours that was accepted (late ones once created), oldest first."""
        return self._account.job_ids("us")

    def stranger_job_ids(self) -> list[str]:
        """Ids of the strangers' jobs created so far, oldest first."""
        return self._account.job_ids("stranger")

    def charges(self) -> list[dict[str, Any]]:
        """The truth the usage endpoint half tells: one entry per billed job, oldest first.

        Billing lag does not hide an entry; a failed job is left out while
        ``bill_failed_jobs`` is False. Each entry: ``job_id``; ``idempotency_key`` (the
        submit's header, None without one and for strangers); ``owner`` (``"us"`` or
        ``"stranger"``); ``mode`` (``std``/``pro``); ``amount_usd`` (what usage reports, once
        visible); ``created`` (epoch seconds on the service's clock, skew included) and
        ``created_at`` (the same as the usage event shows it); ``output_url`` (without the
        signing query; None until the output exists).
        """
        return self._account.charges(self._now())

    def billed_by_key(self) -> Counter[str]:
        """Billed jobs of ours per key (``Idempotency-Key``, else a digest of the body), like
        ``submits_by_key`` but leaving out failed jobs while ``bill_failed_jobs`` is False."""
        return self._account.billed_by_key(self._now())

    def add_stranger_job(self, mode: str = "std", duration: float = 3.0, delay: float = 0.0) -> str:
        """Bill the account for a job someone else submitted; return its id.

        It gets its own output (a placeholder with ``render=False``), never fetches
        references, and is not counted in ``submissions``, ``submits_by_key`` or ``job_ids``.

        Args:
            mode: ``std`` or ``pro``.
            duration: its billable seconds (rounded up), 1 to 30.
            delay: create it this many service seconds from now (scaled, real time); the id
                is known at once but answers 404 until then.

        Raises:
            RuntimeError: the server is not running.
            ValueError: an unknown mode or a duration out of range.
        """
        if mode not in self.config.prices:
            msg = f"mode must be one of {sorted(self.config.prices)}, not {mode!r}"
            raise ValueError(msg)
        if not 1 <= duration <= 30:
            msg = f"duration must be from 1 to 30 seconds, not {duration!r}"
            raise ValueError(msg)
        return self._account.add_stranger(mode, duration, delay)

    def wait_for_workers(self, timeout: float = 120) -> None:
        """Block until every job's worker (fetch, render) has finished."""
        self._account.wait_for_workers(timeout)

    # -- internals ------------------------------------------------------------------------
    def track(self, conn: socket.socket, *, add: bool) -> None:
        """Record an open (``add``) or closed connection, so ``stop`` can drop it."""
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _now(self) -> float:
        return time.monotonic() + self._offset

    def _scaled(self, seconds: float) -> float:
        return seconds * self.config.time_scale

    def _error(
        self, status: int, code: str, message: str, param: str | None = None, **headers: str
    ) -> Response:
        faults = self._plan.current
        echo = getattr(self._local, "key", "") if faults.echo_key_in_errors else ""
        body = error_body(faults.error_style, code, message, param, echo_key=echo or None)
        return json_response(status, body, {k.replace("_", "-"): v for k, v in headers.items()})

    def _server_error(self, status: int) -> Response:
        code = "model_unavailable" if status == 503 else "upstream_error"
        return self._error(status, code, "The model is temporarily unavailable. Retry later.")

    def _too_many(self, retry_after: float) -> Response:
        with self._lock:
            self._rate_limited += 1
        msg = "Rate limit exceeded: too many requests for this account. Retry later."
        return self._error(429, "rate_limit_exceeded", msg, Retry_After=seconds_header(retry_after))

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one request (called by the HTTP layer's threads)."""
        split = urlsplit(target)
        template, arg = route(method, split.path)
        internal = hmac.compare_digest(headers.get(_INTERNAL, ""), self._internal)
        if internal and template == FILE_PATH:
            return self._file(arg, internal=True)
        self._local.key = _received_key(headers)  # for echo_key_in_errors
        with self._lock:
            self._requests[method, template] += 1
        response = self._answer(method, template, arg, split.query, headers, body)
        delay = self._scaled(self._plan.slow_seconds(method, template))
        if delay > 0:
            time.sleep(delay)
        return response

    def _answer(
        self,
        method: str,
        template: str,
        arg: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
    ) -> Response:
        retry = self._plan.take_rate_limit(method, template)
        if retry is not None:
            return self._too_many(self._scaled(retry))
        status = self._plan.take_server_error(method, template)
        if status is not None:
            return self._server_error(status)
        if template == UNKNOWN_PATH:
            return self._error(404, "not_found", f"No route for {method} this path.")
        if template != FILE_PATH:
            denied = self._check_key(headers)
            if denied is not None:
                return denied
        limited = self._check_rate()
        if limited is not None:
            return limited
        if template == SUBMIT_PATH:
            return self._submit(method, headers, body)
        if template == JOB_PATH:
            return self._job(arg)
        if template == FILE_PATH:
            return self._file(arg)
        if template == UPLOAD_PATH:
            return self._upload(headers, body)
        if template == USAGE_PATH:
            return self._usage(parse_qs(query))
        if arg != MODEL_ID:
            return self._error(404, "model_not_found", f"Model {arg!r} does not exist.", "model")
        return json_response(200, model_entry(self.config.prices))

    def _check_key(self, headers: dict[str, str]) -> Response | None:
        expected = self.config.api_key
        if expected is None:
            return None
        given = _received_key(headers)
        if not given:
            msg = "No API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
            return self._error(401, "missing_api_key", msg)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return self._error(401, "invalid_api_key", "The API key provided is not valid.")
        return None

    def _check_rate(self) -> Response | None:
        limit = self.config.rate_limit_per_minute
        if limit is None:
            return None
        window = self._scaled(60.0)
        now = self._now()
        with self._lock:
            while self._window and self._window[0] <= now - window:
                self._window.popleft()
            if len(self._window) >= limit:
                retry = self._window[0] + window - now
            else:
                self._window.append(now)
                return None
        return self._too_many(retry)

    def _submit(self, method: str, headers: dict[str, str], raw: bytes) -> Response:
        try:
            body = json.loads(raw)
        except ValueError:
            return self._error(400, "invalid_json", "The body is not valid JSON.")
        checked = validate_submit(body, reject_unknown=self.config.reject_unknown_fields)
        if isinstance(checked, ValidationFailure):
            return self._error(checked.status, checked.code, checked.message, checked.param)
        if self._plan.current.unknown_model:
            msg = f"Model {checked.model!r} does not exist."
            return self._error(404, "model_not_found", msg, "model")
        if self._plan.take_reject_submit():
            msg = "The reference video could not be processed: no person was detected."
            return self._error(422, "invalid_parameter", msg, "reference_video")
        outcome, job = self._account.submit(checked, body, headers.get("idempotency-key") or None)
        if outcome == "no_credits":
            msg = "Insufficient credits: top up the account balance to submit jobs."
            return self._error(402, "insufficient_credits", msg)
        if outcome in {"late", "created_then_5xx"} or job is None:
            return self._server_error(self._plan.current.server_error_status)
        payload = {
            "job_id": job.job_id,
            "status": self.config.status_words.queued,
            "poll_url": f"{self.url}/v1/jobs/{job.job_id}",
            "created_at": iso(job.created_wall + self._account.skew()),
        }
        response = json_response(200, payload)
        ambiguous = self._plan.take_ambiguous(method, SUBMIT_PATH)
        if ambiguous == "reset":
            response.action = "reset"
        elif ambiguous == "lost":
            response.action = self._plan.current.lost_response_style
        return response

    def _job(self, job_id: str) -> Response:
        now = self._now()
        retention = self._scaled(self.config.retention_seconds)
        expire_on_completion = self._plan.current.expire_after_complete
        phase, view, finished = self._account.read(job_id, now) or ("gone", {}, None)
        gone = (
            phase == "gone"
            or (expire_on_completion and phase == "completed")
            or (finished is not None and now > finished + retention)
        )
        if gone or self._plan.take("poll_not_found"):
            msg = f"Job {job_id!r} does not exist or has expired."
            return self._error(404, "job_not_found", msg)
        if self._plan.take_malformed_json():
            truncated = json.dumps(view)[: len(json.dumps(view)) // 2].encode()
            return Response(200, truncated, {"Content-Type": "application/json"})
        return json_response(200, view)

    def _file(self, name: str, *, internal: bool = False) -> Response:
        stored = self._store.get(name)
        if stored is None:
            return self._error(404, "not_found", "No such file.")
        if not internal and self._account.is_output(name):
            if self._plan.take("file_not_found"):
                return self._error(404, "not_found", "No such file.")
            if self._plan.take("file_error_page"):
                return Response(200, _ERROR_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        return Response(200, stored.path.read_bytes(), {"Content-Type": stored.content_type})

    def _upload(self, headers: dict[str, str], body: bytes) -> Response:
        outcome = receive_upload(self._store, headers.get("content-type", ""), body, self.url)
        if isinstance(outcome, ValidationFailure):
            return self._error(outcome.status, outcome.code, outcome.message, outcome.param)
        return json_response(200, outcome)

    def _usage(self, query: dict[str, list[str]]) -> Response:
        parsed = parse_usage_query(query)
        if isinstance(parsed, ValidationFailure):
            return self._error(parsed.status, parsed.code, parsed.message, parsed.param)
        rows, spent = self._account.usage_rows(self._now())
        payload = {
            "object": "list",
            **usage_page(rows, parsed, self.config.usage_page_size),
            "balance": {"amount": round(self.config.balance_usd - spent, 2), "currency": "USD"},
        }
        return json_response(200, payload)
