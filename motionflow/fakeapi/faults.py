"""Deterministic fault injection for the fake EmpirioLabs server, and its error envelopes."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

__all__ = [
    "ALL_METHODS",
    "FILE_PATH",
    "JOB_PATH",
    "MODEL_PATH",
    "SUBMIT_PATH",
    "UPLOAD_PATH",
    "USAGE_PATH",
    "ErrorStyle",
    "FaultPlan",
    "Faults",
    "error_body",
]

ErrorStyle = Literal["openai", "anthropic", "flat"]
"""Which of the contract's three error envelopes the server sends."""

ALL_METHODS: frozenset[str] = frozenset({"GET", "POST"})
"""Every method the fake server routes."""

# Path templates: how routes are named in counters and fault scopes.
SUBMIT_PATH = "/v1/videos/generations"
JOB_PATH = "/v1/jobs/{job_id}"
FILE_PATH = "/files/{name}"
UPLOAD_PATH = "/v1/files/upload"
USAGE_PATH = "/v1/account/usage"
MODEL_PATH = "/v1/models/{model_id}"

# The category an OpenAI-style envelope puts in ``error.type`` for each code.
_TYPES = {
    "missing_api_key": "authentication_error",
    "invalid_api_key": "authentication_error",
    "insufficient_credits": "billing_error",
    "rate_limit_exceeded": "rate_limit_error",
    "model_unavailable": "server_error",
    "upstream_error": "server_error",
    "model_not_found": "not_found_error",
    "not_found": "not_found_error",
    "job_not_found": "not_found_error",
}


@dataclass
class Faults:
    """Faults to inject, by count (the next N matching requests), never at random by default.

    A ``*_methods`` / ``*_paths`` pair scopes each fault: a request matches when its method is
    in ``*_methods`` and its path template (e.g. ``"/v1/jobs/{job_id}"``) is in ``*_paths``;
    ``None`` paths match every route. Counts are consumed as requests match them.

    Attributes:
        rate_limit_burst: the next N matching requests get 429 ``rate_limit_exceeded``.
        rate_limit_methods: methods the burst applies to.
        rate_limit_paths: path templates the burst applies to (None = all).
        retry_after_seconds: the ``Retry-After`` sent with a burst 429 (scaled by time_scale).
        server_errors: the next N matching requests get ``server_error_status``.
        server_error_status: the 5xx status to send (503 says ``model_unavailable``, any
            other ``upstream_error``).
        server_error_methods: methods the 5xx faults apply to.
        server_error_paths: path templates the 5xx faults apply to (None = all).
        reset_after_read: the next N submits are read fully and ACCEPTED (counted and billed),
            then the connection is reset without a response: the ambiguous case.
        lost_response: like ``reset_after_read``, but a garbage or truncated HTTP response
            is sent before the connection closes.
        lost_response_style: ``"truncated"`` (valid headers, short body) or ``"garbage"``
            (no valid status line).
        ambiguous_paths: path templates (POST) the two faults above apply to.
        slow_seconds: delay every matching response by this much (scaled by time_scale).
        slow_methods: methods the delay applies to.
        slow_paths: path templates the delay applies to (None = all).
        malformed_json: the next N job polls answer 200 with a body that is not valid JSON.
        fail_jobs: the next N accepted jobs end ``failed`` with an error object.
        expire_after_complete: jobs answer 404 as soon as they complete.
        insufficient_credits_after: after N accepted submits, further submits get 402.
        reject_submits: the next N valid submits get 422 ``invalid_parameter`` (as when the
            service cannot use a reference file); nothing is charged.
        unknown_model: submits get 404 ``model_not_found`` (a withdrawn or renamed model).
        error_style: the error envelope to send.
        flaky_rate: with ``seed``, the probability that a matching request (same scope as
            ``server_errors``) gets a 5xx; reproducible for a given seed.
        seed: seeds ``flaky_rate``'s random draws; required when ``flaky_rate`` is above 0.
        late_submits: the next N valid submits (past validation and the credit check) get
            ``server_error_status`` at once, and the job is created and billed
            ``late_seconds`` later by a timer (real time, scaled; ``advance`` does not move it).
            The job is a real job: polled by id, in usage, with an output; it counts in
            ``submissions``/``submits_by_key`` once created, and is not created when an
            honoured ``Idempotency-Key`` already has a job by then.
        late_seconds: how long after a late submit its job appears.
        created_then_5xx: the next N valid submits create and bill the job, then answer
            ``server_error_status`` (the "5xx after the job was created" case).
        poll_not_found: the next N ``GET /v1/jobs/{id}`` of a job that exists answer 404
            ``job_not_found`` (read-after-write lag).
        file_not_found: the next N GETs of an output file that exists answer 404 (CDN
            propagation).
        file_error_page: the next N GETs of an output file answer 200 with an HTML error page
            (``Content-Type: text/html``) instead of the video: a careless CDN.
        echo_key_in_errors: every error body repeats the API key the request carried
            (``Authorization: Bearer`` or ``x-api-key``) in every field of the envelope: raw,
            as ``repr()`` and JSON-escaped (see :func:`error_body`). Nothing is echoed when
            the request carried no key.
    """

    rate_limit_burst: int = 0
    rate_limit_methods: frozenset[str] = ALL_METHODS
    rate_limit_paths: frozenset[str] | None = None
    retry_after_seconds: float = 1.0
    server_errors: int = 0
    server_error_status: int = 503
    server_error_methods: frozenset[str] = ALL_METHODS
    server_error_paths: frozenset[str] | None = None
    reset_after_read: int = 0
    lost_response: int = 0
    lost_response_style: Literal["truncated", "garbage"] = "truncated"
    ambiguous_paths: frozenset[str] = frozenset({SUBMIT_PATH})
    slow_seconds: float = 0.0
    slow_methods: frozenset[str] = ALL_METHODS
    slow_paths: frozenset[str] | None = None
    malformed_json: int = 0
    fail_jobs: int = 0
    expire_after_complete: bool = False
    insufficient_credits_after: int | None = None
    reject_submits: int = 0
    unknown_model: bool = False
    error_style: ErrorStyle = "openai"
    flaky_rate: float = 0.0
    seed: int | None = None
    late_submits: int = 0
    late_seconds: float = 5.0
    created_then_5xx: int = 0
    poll_not_found: int = 0
    file_not_found: int = 0
    file_error_page: int = 0
    echo_key_in_errors: bool = False

    def __post_init__(self) -> None:
        if self.flaky_rate > 0 and self.seed is None:
            msg = "Faults(flaky_rate=...) needs a seed, so a failing test can be replayed."
            raise ValueError(msg)
        if not 500 <= self.server_error_status <= 599:
            msg = f"server_error_status must be a 5xx status, not {self.server_error_status!r}."
            raise ValueError(msg)


# The faults consumed one request at a time (``FaultPlan.take``).
_COUNTED = frozenset(
    {
        "created_then_5xx",
        "fail_jobs",
        "file_error_page",
        "file_not_found",
        "late_submits",
        "lost_response",
        "malformed_json",
        "poll_not_found",
        "rate_limit_burst",
        "reject_submits",
        "reset_after_read",
        "server_errors",
    }
)


def _matches(methods: frozenset[str], paths: frozenset[str] | None, method: str, path: str) -> bool:
    return method in methods and (paths is None or path in paths)


class FaultPlan:
    """The server's live copy of :class:`Faults`: counts are consumed under a lock.

    Args:
        faults: the initial faults; copied, so the caller's object is never changed.
    """

    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self._faults = replace(faults)
        self._rng = random.Random(faults.seed)  # noqa: S311 - reproducible faults, not secrets

    @property
    def current(self) -> Faults:
        """A snapshot of the faults still armed."""
        with self._lock:
            return replace(self._faults)

    def arm(self, **changes: Any) -> None:
        """Change fault settings while the server runs, e.g. ``arm(server_errors=2)``.

        Raises:
            TypeError: a name is not a field of :class:`Faults`.
        """
        names = {f.name for f in fields(Faults)}
        unknown = sorted(set(changes) - names)
        if unknown:
            msg = f"unknown fault setting(s) {unknown}; known: {sorted(names)}"
            raise TypeError(msg)
        with self._lock:
            self._faults = replace(self._faults, **changes)
            if "seed" in changes:
                self._rng = random.Random(self._faults.seed)  # noqa: S311

    def _take(self, name: str) -> bool:
        # Caller holds the lock.
        left = int(getattr(self._faults, name))
        if left <= 0:
            return False
        setattr(self._faults, name, left - 1)
        return True

    def slow_seconds(self, method: str, path: str) -> float:
        """Unscaled delay for this request (0 when none applies)."""
        with self._lock:
            f = self._faults
            return f.slow_seconds if _matches(f.slow_methods, f.slow_paths, method, path) else 0.0

    def take_rate_limit(self, method: str, path: str) -> float | None:
        """Consume one burst 429; return its unscaled Retry-After, or None."""
        with self._lock:
            f = self._faults
            if _matches(f.rate_limit_methods, f.rate_limit_paths, method, path) and self._take(
                "rate_limit_burst"
            ):
                return f.retry_after_seconds
            return None

    def take_server_error(self, method: str, path: str) -> int | None:
        """Consume one 5xx (counted or seeded-random); return its status, or None."""
        with self._lock:
            f = self._faults
            if not _matches(f.server_error_methods, f.server_error_paths, method, path):
                return None
            if self._take("server_errors"):
                return f.server_error_status
            if f.flaky_rate > 0 and self._rng.random() < f.flaky_rate:
                return f.server_error_status
            return None

    def take_ambiguous(self, method: str, path: str) -> Literal["reset", "lost"] | None:
        """Consume one reset-after-read or lost-response fault for an accepted POST."""
        with self._lock:
            if method != "POST" or path not in self._faults.ambiguous_paths:
                return None
            if self._take("reset_after_read"):
                return "reset"
            if self._take("lost_response"):
                return "lost"
            return None

    def take_malformed_json(self) -> bool:
        """Consume one malformed job-poll response."""
        with self._lock:
            return self._take("malformed_json")

    def take_reject_submit(self) -> bool:
        """Consume one refused submit."""
        with self._lock:
            return self._take("reject_submits")

    def take_fail_job(self) -> bool:
        """Consume one job failure (decided when the job is accepted)."""
        return self.take("fail_jobs")

    def take(self, name: str) -> bool:
        """Consume one of a counted fault, e.g. ``take("poll_not_found")``; False if none left.

        Raises:
            TypeError: ``name`` is not a counted (int) field of :class:`Faults`.
        """
        if name not in _COUNTED:
            msg = f"{name!r} is not a counted fault; counted faults: {sorted(_COUNTED)}"
            raise TypeError(msg)
        with self._lock:
            return self._take(name)


def error_body(
    style: ErrorStyle,
    code: str,
    message: str,
    param: str | None = None,
    *,
    echo_key: str | None = None,
) -> dict[str, Any]:
    """Build an error body in one of the contract's three envelopes.

    The Anthropic-style envelope has no ``code`` field, so the code goes in ``error.type``
    (what a proxy speaking that style does with a service-specific code).

    With ``echo_key`` (a careless service) every field of the envelope carries the key. The
    message gets ``" (key: KEY; as sent: repr(KEY); json.dumps(KEY))"``: raw, repr-escaped and
    JSON-escaped; the code (``error.code``, the Anthropic ``error.type``, the flat ``error``)
    gets ``" KEY"``; the OpenAI ``error.type`` gets ``" " + json.dumps(KEY)``; ``param``
    becomes ``"<param> KEY"`` (or ``"KEY"``). The Anthropic top-level ``"type": "error"``
    stays: it only says the body is an error.

    Args:
        style: ``"openai"``, ``"anthropic"`` or ``"flat"``.
        code: the machine-readable code, e.g. ``"rate_limit_exceeded"``.
        message: the human-readable message (never containing a key).
        param: the request field at fault, for validation errors.
        echo_key: the key the request carried, to leak into every field; None leaks nothing.

    Returns:
        The JSON-ready body.
    """
    kind = _TYPES.get(code, "invalid_request_error")
    if echo_key:
        message = f"{message} (key: {echo_key}; as sent: {echo_key!r}; {json.dumps(echo_key)})"
        code = f"{code} {echo_key}"
        kind = f"{kind} {json.dumps(echo_key)}"
        param = f"{param} {echo_key}" if param else echo_key
    if style == "anthropic":
        return {"type": "error", "error": {"type": code, "message": message}}
    if style == "flat":
        body: dict[str, Any] = {"error": code, "message": message}
        if param is not None:
            body["param"] = param
        return body
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}
