"""EmpirioLabs job observations: status normalisation, the Job record, the poll schedule."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from motionflow.providers.envelopes import excerpt, output_urls, parse_time

__all__ = [
    "FAILURE",
    "QUEUED",
    "RUNNING",
    "SUCCESS",
    "Job",
    "JobState",
    "is_queued",
    "normalise_status",
    "parse_job",
    "poll_interval",
]

JobState = Literal["running", "succeeded", "failed"]

SUCCESS = frozenset({"completed", "succeeded", "success", "succeed", "done", "finished"})
FAILURE = frozenset({"failed", "fail", "error", "cancelled", "canceled", "expired"})
QUEUED = frozenset({"queued", "pending", "submitted", "created"})
RUNNING = QUEUED | frozenset({"processing", "running", "in_progress"})

_FIRST = 5.0  # seconds between the first polls (docs/api.md, "Polling")
_GROWTH = 1.25
_CEILING = 15.0  # with ±25 % jitter, later polls land in 11.25..18.75 s
_JITTER = 0.25


def normalise_status(raw: str) -> tuple[JobState, bool]:
    """Map a provider status to ``running``, ``succeeded`` or ``failed``.

    Args:
        raw: the ``status`` field as the service sent it (case and spacing are ignored).

    Returns:
        The normalised state and whether ``raw`` was a known synonym. An unknown status
        counts as ``running``: the job is polled again, and the caller warns once.
    """
    value = raw.strip().lower().replace("-", "_").replace(" ", "_")
    if value in SUCCESS:
        return "succeeded", True
    if value in FAILURE:
        return "failed", True
    if value in RUNNING:
        return "running", True
    return "running", False


def is_queued(raw: str) -> bool:
    """Whether ``raw`` says the job has not started yet (time here does not count)."""
    return raw.strip().lower() in QUEUED


def poll_interval(attempt: int, rng: random.Random, *, first: float = _FIRST) -> float:
    """Seconds to wait before poll number ``attempt + 1``: about 5 s at first, 10..20 s later.

    Args:
        attempt: how many polls of this job were made already (0 for the first wait).
        rng: the source of jitter, so that tests can pin it.
        first: the first interval; later ones grow to three times it (the default 5 s
            gives the contract's schedule; a fake server at a compressed time scale uses less).

    Returns:
        ``min(5 * 1.25**attempt, 15)`` seconds, jittered by ±25 % so that many jobs
        submitted together do not poll in lockstep.
    """
    base = min(first * _GROWTH ** max(attempt, 0), first * _CEILING / _FIRST)
    return base * (1.0 + rng.uniform(-_JITTER, _JITTER))


@dataclass(frozen=True)
class Job:
    """One observation of a job, normalised.

    Attributes:
        job_id: the provider's job id.
        state: ``running``, ``succeeded`` or ``failed``.
        raw_status: the status exactly as the service sent it.
        progress: a fraction in 0..1.
        output_urls: signed output URLs (download them at once; they expire).
        usage: ``result.usage`` (billable units) for the cost ledger, or ``None``.
        error: the failure message of a failed job, or ``None``.
        completed_at: when the job finished, or ``None``.
        known_status: ``False`` when ``raw_status`` was not a documented synonym.
    """

    job_id: str
    state: JobState
    raw_status: str
    progress: float = 0.0
    output_urls: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    error: str | None = None
    completed_at: datetime | None = None
    known_status: bool = True


def _progress(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0.0
    try:
        number = float(value)
    except ValueError:
        return 0.0
    if number > 1.0:  # a percent despite the contract
        number /= 100.0
    return min(max(number, 0.0), 1.0)


def _error_message(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        text = _text(value.get("message")) or _text(value.get("code")) or _text(value.get("type"))
        return excerpt(text or json.dumps(value), limit=400)
    return excerpt(_text(value), limit=400)


def parse_job(data: dict[str, Any], job_id: str) -> Job:
    """Normalise a job body; ``job_id`` is used when the body does not repeat it."""
    raw = _text(data.get("status")) or "unknown"
    state, known = normalise_status(raw)
    result = data.get("result")
    usage = result.get("usage") if isinstance(result, dict) else None
    progress = 1.0 if state == "succeeded" else _progress(data.get("progress"))
    return Job(
        job_id=_text(data.get("job_id") or data.get("id")) or job_id,
        state=state,
        raw_status=raw,
        progress=progress,
        output_urls=output_urls(result),
        usage=usage if isinstance(usage, dict) else None,
        error=_error_message(data.get("error")) if state == "failed" else None,
        completed_at=parse_time(data.get("completed_at")),
        known_status=known,
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)
