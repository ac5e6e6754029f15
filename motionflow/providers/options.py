"""How a run talks to its provider: CLI flags and ``EMPIRIOLABS_*`` settings."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from motionflow.errors import UsageError

__all__ = ["GenerationOptions", "options_from_env"]


@dataclass(frozen=True)
class GenerationOptions:
    """How a run talks to its provider (CLI flags and ``EMPIRIOLABS_*`` settings).

    Attributes:
        resubmit_in_doubt: pay again for jobs whose submit is in doubt (same Idempotency-Key).
        resubmit_lost: pay again for jobs whose result is lost.
        retry_failed: submit again jobs the service reported as failed.
        rate_limit: API requests per minute, for every process on this cache.
        poll_seconds: the first poll interval (later ones grow to 3x it).
        job_timeout: seconds a job may run once it has left the queue.
        retention: seconds the service keeps a job after it completes (the contract: 1 hour).
        not_found_patience: seconds a run keeps retrying 404s and failed downloads of a job.
        max_jobs: generations in flight at once (the rate limit is the real bound).
        env: where ``EMPIRIOLABS_API_KEY`` and ``EMPIRIOLABS_BASE_URL`` are read (never shown
            by ``repr``: it holds the key).
    """

    resubmit_in_doubt: bool = False
    resubmit_lost: bool = False
    retry_failed: bool = False
    rate_limit: int = 50
    poll_seconds: float = 5.0
    job_timeout: float = 1800.0
    retention: float = 3600.0
    not_found_patience: float = 300.0
    max_jobs: int = 10
    env: Mapping[str, str] | None = field(default=None, repr=False, compare=False)


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
    ``_RETENTION_SECONDS``, ``_NOT_FOUND_PATIENCE``, ``_MAX_JOBS`` and the given CLI
    ``flags`` (which win).

    Raises:
        UsageError: a variable is not a valid number.
    """
    source = dict(os.environ if env is None else env)
    values: dict[str, Any] = {
        "rate_limit": int(_env_number(source, "EMPIRIOLABS_RATE_LIMIT", 50, minimum=1)),
        "poll_seconds": _env_number(source, "EMPIRIOLABS_POLL_SECONDS", 5.0, minimum=0.001),
        "job_timeout": _env_number(source, "EMPIRIOLABS_JOB_TIMEOUT", 1800.0, minimum=1),
        "retention": _env_number(source, "EMPIRIOLABS_RETENTION_SECONDS", 3600.0, minimum=0),
        "not_found_patience": _env_number(
            source, "EMPIRIOLABS_NOT_FOUND_PATIENCE", 300.0, minimum=0
        ),
        "max_jobs": int(_env_number(source, "EMPIRIOLABS_MAX_JOBS", 10, minimum=1)),
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    return GenerationOptions(env=source, **values)
