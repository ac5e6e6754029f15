"""The fake EmpirioLabs server: the API contract over real loopback HTTP, with injected faults."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import secrets
import socket
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

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
from motionflow.fakeapi.handler import (
    UNKNOWN_PATH,
    Handler,
    LoopbackServer,
    Response,
    json_response,
    route,
    seconds_header,
)
from motionflow.fakeapi.jobs import (
    MODEL_ID,
    Job,
    ResultShape,
    StatusWords,
    SubmitRequest,
    ValidationFailure,
    iso,
    model_entry,
    parse_usage_query,
    usage_page,
    validate_submit,
)
from motionflow.fakeapi.store import FileStore, receive_upload
from motionflow.fakeapi.worker import produce_output

__all__ = ["FakeConfig", "FakeEmpirioLabs"]

_INTERNAL = "x-fakeapi-internal"


@dataclass
class FakeConfig:
    """How the fake server behaves. Every delay is multiplied by ``time_scale``.

    Attributes:
        api_key: the accepted key; None accepts any key (or none).
        time_scale: factor on every delay (queue, processing, retention, rate window, faults).
        queue_seconds: time a job spends ``queued``.
        processing_seconds: time a job spends ``processing`` (longer if rendering is slower).
        retention_seconds: a job answers 404 this long after it finishes.
        rate_limit_per_minute: requests allowed per sliding minute, across every route
            (None = unlimited); over it the answer is 429 with ``Retry-After``.
        fetch_references: GET the reference URLs like the real service; a failed fetch
            fails the job.
        render: write a real video with ffmpeg; False writes a tiny placeholder file.
        result_shape: where the output URL goes in a completed job's ``result``.
        status_words: the status synonyms to report.
        faults: faults to inject (the server keeps its own copy; see ``arm``).
        prices: USD per billable second by mode, used for usage events.
        balance_usd: starting balance shown by the usage endpoint.
        bill_failed_jobs: whether a failed job still costs money in usage events.
        honour_idempotency_key: return the earlier job for a repeated ``Idempotency-Key``
            instead of accepting (and billing) a new one. Off: the contract documents none.
        reject_unknown_fields: answer 422 for submit fields the contract does not list.
        store_dir: where outputs and uploads are kept; a temporary folder when None.
        port: the port to bind on 127.0.0.1; 0 picks a free one.
    """

    api_key: str | None = "sk-empiriolabs-test"
    time_scale: float = 1.0
    queue_seconds: float = 1.0
    processing_seconds: float = 2.0
    retention_seconds: float = 3600.0
    rate_limit_per_minute: int | None = None
    fetch_references: bool = True
    render: bool = True
    result_shape: ResultShape = "data"
    status_words: StatusWords = field(default_factory=StatusWords)
    faults: Faults = field(default_factory=Faults)
    prices: dict[str, float] = field(default_factory=lambda: {"std": 0.14, "pro": 0.18})
    balance_usd: float = 100.0
    bill_failed_jobs: bool = True
    honour_idempotency_key: bool = False
    reject_unknown_fields: bool = True
    store_dir: Path | None = None
    port: int = 0


class FakeEmpirioLabs:
    """A local stand-in for the EmpirioLabs API, served on 127.0.0.1 by a thread.

    Jobs advance by the (scaled) wall clock and are computed when read; a worker thread per
    job fetches the references and renders the output. Counters let tests see what the
    client really sent. Nothing is printed or logged.

    Args:
        config: how the server behaves.

    Example:
        >>> with FakeEmpirioLabs(FakeConfig(render=False)) as fake:  # doctest: +SKIP
        ...     httpx.get(f"{fake.url}/v1/models/kling-v3-motion-control", headers=...)
    """

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config or FakeConfig()
        self._plan = FaultPlan(self.config.faults)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._by_key: dict[str, str] = {}
        self._submissions: list[dict[str, Any]] = []
        self._submits_by_key: Counter[str] = Counter()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._rate_limited = 0
        self._window: deque[float] = deque()
        self._offset = 0.0
        self._conns: set[socket.socket] = set()
        self._workers: list[threading.Thread] = []
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
        self._work_root = root / "work"
        httpd = LoopbackServer(("127.0.0.1", self.config.port), Handler)
        httpd.app = self
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving, drop open connections, wait for workers, remove temporary files."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns, workers = list(self._conns), list(self._workers)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for worker in workers:
            worker.join(timeout=120)
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
        """Every accepted submit body, in order (a copy)."""
        with self._lock:
            return list(self._submissions)

    @property
    def submits_by_key(self) -> Counter[str]:
        """Accepted submits by ``Idempotency-Key`` (else a digest of the body)."""
        with self._lock:
            return Counter(self._submits_by_key)

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
        """Change faults while running, e.g. ``fake.arm(server_errors=2)``."""
        self._plan.arm(**changes)

    def advance(self, seconds: float) -> None:
        """Move the server's clock forward by ``seconds`` of (unscaled) service time."""
        with self._lock:
            self._offset += seconds * self.config.time_scale

    def job_ids(self) -> list[str]:
        """Ids of every accepted job, oldest first."""
        with self._lock:
            return list(self._jobs)

    def wait_for_workers(self, timeout: float = 120) -> None:
        """Block until every job's worker (fetch, render) has finished."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(timeout=timeout)

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
        body = error_body(self._plan.current.error_style, code, message, param)
        return json_response(status, body, {k.replace("_", "-"): v for k, v in headers.items()})

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
            return self._file(arg)
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
            code = "model_unavailable" if status == 503 else "upstream_error"
            return self._error(status, code, "The model is temporarily unavailable. Retry later.")
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
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
        given = given or headers.get("x-api-key", "").strip()
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
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        key = headers.get("idempotency-key") or hashlib.sha256(canonical.encode()).hexdigest()
        credits_after = self._plan.current.insufficient_credits_after
        with self._lock:
            known = self._by_key.get(key, "") if self.config.honour_idempotency_key else ""
            job = self._jobs.get(known)
            if job is None:
                if credits_after is not None and len(self._submissions) >= credits_after:
                    msg = "Insufficient credits: top up the account balance to submit jobs."
                    return self._error(402, "insufficient_credits", msg)
                job = self._accept(checked, body, key)
        payload = {
            "job_id": job.job_id,
            "status": self.config.status_words.queued,
            "poll_url": f"{self.url}/v1/jobs/{job.job_id}",
            "created_at": iso(job.created_wall),
        }
        response = json_response(200, payload)
        ambiguous = self._plan.take_ambiguous(method, SUBMIT_PATH)
        if ambiguous == "reset":
            response.action = "reset"
        elif ambiguous == "lost":
            response.action = self._plan.current.lost_response_style
        return response

    def _accept(self, request: SubmitRequest, body: dict[str, Any], key: str) -> Job:
        # Caller holds the lock: the credit check and the acceptance are one step.
        now = self._now()
        queued_until = now + self._scaled(self.config.queue_seconds)
        job = Job(
            job_id=f"job_{secrets.token_hex(12)}",
            request=request,
            created=now,
            created_wall=time.time(),
            queued_until=queued_until,
            ready_at=queued_until + self._scaled(self.config.processing_seconds),
            will_fail=self._plan.take_fail_job(),
            billable=float(math.ceil(request.duration)),
        )
        self._jobs[job.job_id] = job
        self._by_key.setdefault(key, job.job_id)
        self._submissions.append(body)
        self._submits_by_key[key] += 1
        worker = threading.Thread(target=self._work, args=(job,), daemon=True)
        self._workers.append(worker)
        worker.start()
        return job

    def _work(self, job: Job) -> None:
        def set_billable(seconds: float) -> None:
            with self._lock:
                job.billable = seconds

        outcome = produce_output(
            job_id=job.job_id,
            request=job.request,
            work_root=self._work_root,
            store=self._store,
            fetch=self.config.fetch_references,
            render=self.config.render,
            will_fail=job.will_fail,
            internal_headers={_INTERNAL: self._internal},
            on_billable=set_billable,
        )
        with self._lock:
            job.billable = outcome.billable
            job.output_name = outcome.output_name
            job.worker_error = outcome.error
            job.worker_done = self._now()

    def _output_url(self, job: Job) -> str | None:
        if job.output_name is None:
            return None
        expires = int(job.created_wall) + 7 * 86400
        sig = hashlib.sha256(f"{self._internal}:{job.output_name}".encode()).hexdigest()[:32]
        return f"{self.url}/files/{job.output_name}?Expires={expires}&Signature={sig}"

    def _view(self, job: Job, now: float) -> tuple[str, dict[str, Any]]:
        cfg = self.config
        return job.view(now, cfg.status_words, cfg.result_shape, self._output_url(job))

    def _job(self, job_id: str) -> Response:
        now = self._now()
        retention = self._scaled(self.config.retention_seconds)
        expire_on_completion = self._plan.current.expire_after_complete
        with self._lock:
            job = self._jobs.get(job_id)
            phase, view = self._view(job, now) if job else ("gone", {})
            finished = job.state(now)[2] if job else None
        gone = (
            job is None
            or (expire_on_completion and phase == "completed")
            or (finished is not None and now > finished + retention)
        )
        if gone:
            msg = f"Job {job_id!r} does not exist or has expired."
            return self._error(404, "job_not_found", msg)
        if self._plan.take_malformed_json():
            truncated = json.dumps(view)[: len(json.dumps(view)) // 2].encode()
            return Response(200, truncated, {"Content-Type": "application/json"})
        return json_response(200, view)

    def _file(self, name: str) -> Response:
        stored = self._store.get(name)
        if stored is None:
            return self._error(404, "not_found", "No such file.")
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
        now = self._now()
        rows: list[tuple[dict[str, Any], str, float]] = []
        spent = 0.0
        with self._lock:
            for job in sorted(self._jobs.values(), key=lambda j: j.created, reverse=True):
                phase, view = self._view(job, now)
                price = self.config.prices[job.request.mode]
                free = phase == "failed" and not self.config.bill_failed_jobs
                amount = 0.0 if free else round(job.billable * price, 2)
                spent += amount
                url = self._output_url(job)
                event = {
                    "id": f"use_{job.job_id.removeprefix('job_')}",
                    "job_id": job.job_id,
                    "model": MODEL_ID,
                    "mode": job.request.mode,
                    "status": view["status"],
                    "billable_seconds": job.billable,
                    "cost": {"amount": amount, "currency": "USD"},
                    "output_urls": [url] if url and phase == "completed" else [],
                    "created_at": view["created_at"],
                    "completed_at": view["completed_at"],
                }
                rows.append((event, phase, job.created_wall))
        picked, more = usage_page(rows, parsed)
        balance = round(self.config.balance_usd - spent, 2)
        payload = {
            "object": "list",
            "data": picked,
            "has_more": more,
            "balance": {"amount": balance, "currency": "USD"},
        }
        return json_response(200, payload)
