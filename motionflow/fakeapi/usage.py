"""The fake server's usage endpoint: its query, its events (no job id) and its pages."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from motionflow.fakeapi.faults import SUBMIT_PATH
from motionflow.fakeapi.jobs import MODEL_ID, Job, ValidationFailure

__all__ = ["UsageQuery", "parse_usage_query", "usage_event", "usage_page"]


@dataclass(frozen=True)
class UsageQuery:
    """The usage endpoint's filters: a created-at range (epoch seconds, service clock) and more.

    Attributes:
        start: ``from``: the earliest ``created_at`` to list (inclusive).
        end: ``to``: the latest ``created_at`` to list (inclusive).
        status: only events with this status (as reported, or the server's own word).
        model: only events of this model.
        before: a cursor: only events after the event with this id (older ones).
        limit: the most events the caller wants on the page.
    """

    start: float
    end: float
    status: str | None
    model: str | None
    before: str | None
    limit: int


def _epoch(text: str) -> float:
    """Epoch seconds from epoch seconds or ISO 8601 (a time without a zone is UTC)."""
    try:
        value = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = moment.timestamp()
    if not math.isfinite(value):
        msg = f"not a finite time: {text!r}"
        raise ValueError(msg)
    return value


def parse_usage_query(query: dict[str, list[str]]) -> UsageQuery | ValidationFailure:
    """Read ``from``, ``to`` (ISO 8601 or epoch seconds), ``status``, ``model``, ``before``
    and ``limit`` (1..1000, default 100) from a parsed query string."""

    def one(name: str) -> str | None:
        return query[name][-1] if name in query else None

    bounds = {"from": -math.inf, "to": math.inf}
    for name in bounds:
        text = one(name)
        if text is None:
            continue
        try:
            bounds[name] = _epoch(text)
        except ValueError:
            msg = f"'{name}' must be an ISO 8601 time or epoch seconds."
            return ValidationFailure(400, "invalid_parameter", msg, name)
    limit = one("limit") or "100"
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 1000):
        msg = "'limit' must be a whole number from 1 to 1000."
        return ValidationFailure(400, "invalid_parameter", msg, "limit")
    return UsageQuery(
        bounds["from"], bounds["to"], one("status"), one("model"), one("before"), int(limit)
    )


def usage_event(
    job: Job,
    view: dict[str, Any],
    *,
    amount: float,
    output_url: str | None,
    mode_words: dict[str, str] | None,
    with_job_id: bool,
) -> dict[str, Any]:
    """One job's usage event, as the real usage API shows it: no job id, no request parameters.

    Args:
        job: the billed job.
        view: the job object as a poll would show it now (status and timestamps, skewed).
        amount: the USD charged.
        output_url: the output's signed URL once the job has completed, else None.
        mode_words: how to spell the mode (None: as sent).
        with_job_id: add ``job_id`` (old tests only; the real API never does).
    """
    mode = job.request.mode
    event: dict[str, Any] = {
        "id": job.usage_id,
        "object": "usage_event",
        "model": MODEL_ID,
        "endpoint": SUBMIT_PATH,
        "mode": (mode_words or {}).get(mode, mode),
        "status": view["status"],
        "billable_seconds": job.billable,
        "cost": {"amount": amount, "currency": "USD"},
        "output_urls": [output_url] if output_url else [],
        "metadata": {},
        "created_at": view["created_at"],
        "completed_at": view["completed_at"],
    }
    if with_job_id:
        event["job_id"] = job.job_id
    return event


def usage_page(
    rows: list[tuple[dict[str, Any], str]], query: UsageQuery, page_size: int | None
) -> dict[str, Any]:
    """Filter and cut usage events: ``(event, phase)`` rows in, newest first.

    ``from``/``to`` compare with each event's ``created_at`` exactly as reported (on the
    service's clock, to the millisecond), so an event's own timestamp always selects it.

    Args:
        rows: every visible event, newest first, with the server's phase of its job.
        query: the parsed filters; ``before`` skips up to and including that event (an
            unknown cursor gives an empty page).
        page_size: the server's own cap on a page, whatever ``limit`` says (None: none).

    Returns:
        ``{"data", "has_more", "next_cursor"}``; ``next_cursor`` is the id of the page's last
        event (None on an empty page), the ``before`` of the next page.
    """
    if query.before is not None:
        ids = [event["id"] for event, _ in rows]
        rows = rows[ids.index(query.before) + 1 :] if query.before in ids else []
    picked = [
        event
        for event, phase in rows
        if query.start <= _epoch(event["created_at"]) <= query.end
        and (query.status is None or query.status in {event["status"], phase})
        and (query.model is None or query.model == event["model"])
    ]
    size = query.limit if page_size is None else min(query.limit, page_size)
    page = picked[:size]
    return {
        "data": page,
        "has_more": len(picked) > size,
        "next_cursor": page[-1]["id"] if page else None,
    }
