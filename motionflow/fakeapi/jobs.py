"""Submit validation, the job lifecycle and the views the fake server sends for jobs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "CAPS",
    "MODEL_ID",
    "Job",
    "ResultShape",
    "StatusWords",
    "SubmitRequest",
    "ValidationFailure",
    "iso",
    "model_entry",
    "result_body",
    "validate_submit",
]

MODEL_ID = "kling-v3-motion-control"
"""The one model the fake serves."""

CAPS: dict[str, float] = {"image": 10.0, "video": 30.0}
"""Maximum duration in seconds per ``character_orientation``."""

ResultShape = Literal["data", "output_urls", "urls", "video.url", "video_url", "url"]
"""Where a completed job's output URL goes in ``result`` (the contract's six shapes)."""

_RESOLUTIONS = {"std": "720p", "pro": "1080p"}
_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "reference_image",
        "reference_video",
        "character_orientation",
        "mode",
        "duration",
        "keep_original_sound",
    }
)


@dataclass(frozen=True)
class StatusWords:
    """The status synonyms the server reports (see the contract's normalisation lists)."""

    queued: str = "queued"
    processing: str = "processing"
    completed: str = "completed"
    failed: str = "failed"


@dataclass(frozen=True)
class SubmitRequest:
    """A validated submit body, with the contract's defaults filled in."""

    model: str
    prompt: str
    reference_image: str
    reference_video: str
    character_orientation: str
    mode: str
    duration: float
    keep_original_sound: bool


@dataclass(frozen=True)
class ValidationFailure:
    """Why a submit body was refused: HTTP status, error code, message and the field."""

    status: int
    code: str
    message: str
    param: str | None


def _fail(param: str, message: str, code: str = "invalid_parameter") -> ValidationFailure:
    return ValidationFailure(422, code, message, param)


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def validate_submit(body: Any, *, reject_unknown: bool) -> SubmitRequest | ValidationFailure:
    """Check a submit body against the contract's table, like the real service.

    Args:
        body: the decoded JSON body.
        reject_unknown: refuse fields the table does not list (catches client typos).

    Returns:
        The request, or the first problem found.
    """
    if not isinstance(body, dict):
        return ValidationFailure(400, "invalid_request", "The body must be a JSON object.", None)
    if reject_unknown:
        for name in sorted(set(body) - _FIELDS):
            return _fail(name, f"Unknown parameter {name!r}.", "unknown_parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _fail("model", "'model' is required and must be a string.", "missing_parameter")
    if model != MODEL_ID:
        return ValidationFailure(
            404, "model_not_found", f"Model {model!r} does not exist.", "model"
        )
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return _fail("prompt", "'prompt' is required and must be a non-empty string.")
    if len(prompt) > 2500:
        return _fail("prompt", f"'prompt' is {len(prompt)} characters; the maximum is 2500.")
    urls: dict[str, str] = {}
    for name in ("reference_image", "reference_video"):
        value = body.get(name)
        if not isinstance(value, str) or not _is_http_url(value):
            return _fail(name, f"'{name}' is required and must be a public http(s) URL.")
        urls[name] = value
    orientation = body.get("character_orientation", "image")
    if orientation not in CAPS:
        return _fail("character_orientation", "'character_orientation' must be image or video.")
    mode = body.get("mode", "std")
    if mode not in _RESOLUTIONS:
        return _fail("mode", "'mode' must be std or pro.")
    duration = body.get("duration", 5)
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        return _fail("duration", "'duration' must be a number of seconds.")
    if not (math.isfinite(duration) and 1 <= duration <= 30):
        return _fail("duration", "'duration' must be between 1 and 30 seconds.")
    cap = CAPS[orientation]
    if duration > cap:
        msg = f"'duration' is at most {cap:g} s when character_orientation is {orientation!r}."
        return _fail("duration", msg)
    sound = body.get("keep_original_sound", True)
    if not isinstance(sound, bool):
        return _fail("keep_original_sound", "'keep_original_sound' must be true or false.")
    return SubmitRequest(
        model=model,
        prompt=prompt,
        reference_image=urls["reference_image"],
        reference_video=urls["reference_video"],
        character_orientation=str(orientation),
        mode=str(mode),
        duration=float(duration),
        keep_original_sound=sound,
    )


def iso(wall: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC (``2026-11-24T10:00:00.123Z``), or None."""
    if wall is None:
        return None
    return (
        datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass
class Job:
    """One accepted job; its status is computed from the clock when it is read.

    Attributes:
        job_id: the id returned to the client.
        request: the validated submit body.
        created: the server clock (scaled seconds) at acceptance.
        created_wall: wall-clock time at acceptance, for timestamps.
        queued_until: the server clock when the job leaves the queue.
        ready_at: the server clock when processing is over.
        will_fail: a fault decided this job fails.
        billable: billable seconds (refined once the reference video is probed).
        output_name: the output's name in the file store, once it exists.
        worker_error: why fetching or rendering failed, if it did.
        worker_done: the server clock when the worker finished, or None while it runs.
        seq: the order jobs were created in (ties on ``created`` are broken by it).
        owner: ``"us"`` (a submit the server answered) or ``"stranger"`` (someone else on
            the account).
        idempotency_key: the submit's ``Idempotency-Key`` header, if it had one.
        count_key: what ``submits_by_key`` counts the job under (the header, else a digest
            of the body); empty for strangers.
        usage_id: the id of the job's usage event (unrelated to the job id).
        billed_from: the server clock when the job's usage event appears (billing lag).
    """

    job_id: str
    request: SubmitRequest
    created: float
    created_wall: float
    queued_until: float
    ready_at: float
    will_fail: bool
    billable: float
    output_name: str | None = None
    worker_error: tuple[str, str] | None = None
    worker_done: float | None = None
    seq: int = 0
    owner: Literal["us", "stranger"] = "us"
    idempotency_key: str | None = None
    count_key: str = ""
    usage_id: str = ""
    billed_from: float = 0.0

    def state(self, now: float) -> tuple[str, float, float | None]:
        """(phase, progress, finished clock): phase is queued/processing/completed/failed."""
        if self.worker_error is not None and self.worker_done is not None:
            return "failed", 0.0, self.worker_done
        queue_end = self.queued_until
        if now < queue_end:
            return "queued", 0.0, None
        if now < self.ready_at or self.worker_done is None:
            span = max(self.ready_at - queue_end, 1e-9)
            return "processing", min((now - queue_end) / span, 0.99), None
        if self.will_fail:
            return "failed", 0.0, self.ready_at
        return "completed", 1.0, max(self.ready_at, self.worker_done)

    def view(
        self,
        now: float,
        words: StatusWords,
        shape: ResultShape,
        url: str | None,
        skew: float = 0.0,
    ) -> tuple[str, dict[str, Any]]:
        """(phase, the job object as ``GET /v1/jobs/{id}`` shows it) at clock ``now``.

        ``skew`` (seconds) is added to every timestamp: the service's clock is not ours.
        """
        phase, progress, finished = self.state(now)
        usage = {"billable_seconds": self.billable, "unit": "second", "mode": self.request.mode}
        result = result_body(shape, url, usage) if url and phase == "completed" else None
        error = None
        if phase == "failed":
            code, message = self.worker_error or ("generation_failed", "The generation failed.")
            error = {"code": code, "message": message}
        finished_wall = None if finished is None else self.created_wall + finished - self.created
        return phase, {
            "job_id": self.job_id,
            "status": getattr(words, phase),
            "progress": round(progress, 4),
            "created_at": iso(self.created_wall + skew),
            "completed_at": iso(None if finished_wall is None else finished_wall + skew),
            "result": result,
            "error": error,
        }


def result_body(shape: ResultShape, url: str, usage: dict[str, Any]) -> dict[str, Any]:
    """A completed job's ``result`` with the output URL in the given shape, plus ``usage``."""
    result: dict[str, Any]
    if shape == "data":
        result = {"data": [{"url": url}]}
    elif shape == "output_urls":
        result = {"output_urls": [url]}
    elif shape == "urls":
        result = {"urls": [url]}
    elif shape == "video.url":
        result = {"video": {"url": url}}
    elif shape == "video_url":
        result = {"video_url": url}
    else:
        result = {"url": url}
    result["usage"] = usage
    return result


def model_entry(prices: dict[str, float]) -> dict[str, Any]:
    """The catalog entry for :data:`MODEL_ID`, with ``pricing_rows`` and parameters."""
    rows = [
        {
            "mode": mode,
            "resolution": _RESOLUTIONS[mode],
            "unit": "second",
            "price": prices[mode],
            "currency": "USD",
        }
        for mode in ("std", "pro")
    ]
    params = [
        {"name": "model", "type": "string", "required": True},
        {"name": "prompt", "type": "string", "required": True, "max_length": 2500},
        {"name": "reference_image", "type": "string", "format": "uri", "required": True},
        {"name": "reference_video", "type": "string", "format": "uri", "required": True},
        {
            "name": "character_orientation",
            "type": "string",
            "enum": ["image", "video"],
            "default": "image",
        },
        {"name": "mode", "type": "string", "enum": ["std", "pro"], "default": "std"},
        {"name": "duration", "type": "number", "minimum": 1, "maximum": 30, "default": 5},
        {"name": "keep_original_sound", "type": "boolean", "default": True},
    ]
    return {
        "id": MODEL_ID,
        "object": "model",
        "owned_by": "kuaishou",
        "pricing_rows": rows,
        "supported_parameters": params,
    }
