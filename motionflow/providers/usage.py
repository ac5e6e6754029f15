"""What the account's usage can tell about our jobs: informative, never conclusive.

Usage events carry no job id and no request parameters, are stamped on the service's clock,
may lag behind the charge, come in pages, and include every user and machine on the account.
So they are used in two ways only:

- a charge whose output URL (without its signature) is the video of one of our journaled jobs
  is that job's charge: its ``cost.amount`` is the job's actual cost;
- for a submit in doubt, the charges around its time that no journal record claims are shown
  to the user as *candidates* (time, cost, video) to look at and adopt explicitly. Nothing is
  adopted, and nothing is declared "not charged", by motionflow itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from motionflow.cache.journal import JobRecord
from motionflow.errors import ProviderError
from motionflow.events import Event, Warning
from motionflow.providers.envelopes import UsageEvent

__all__ = [
    "CANDIDATE_AFTER",
    "CANDIDATE_BEFORE",
    "Candidate",
    "UsageView",
    "bare_url",
    "candidates",
    "charges_by_output",
    "read_usage",
]

MODEL_ID = "kling-v3-motion-control"
CANDIDATE_BEFORE = timedelta(minutes=15)
"""How far before a submit (our clock) a charge may be stamped: the service's clock may lag."""
CANDIDATE_AFTER = timedelta(hours=2)
"""How far after a submit a charge may be stamped: clock skew, late creation, billing lag."""


def bare_url(url: str) -> str:
    """``url`` without query and fragment: a signed URL's stable part."""
    try:
        return str(httpx.URL(url).copy_with(query=None, fragment=None))
    except httpx.InvalidURL:
        return url


@dataclass(frozen=True)
class UsageView:
    """Usage events read for a purpose, and whether the read was complete."""

    events: list[UsageEvent]
    complete: bool


async def read_usage(
    client: Any, records: Iterable[JobRecord], emit: Callable[[Event], None] | None = None
) -> UsageView | None:
    """Every usage event since well before the earliest of ``records`` (all pages).

    Returns:
        The events, or None when the usage API could not be read (a warning is emitted).
    """
    starts = [_when(r.started_at) for r in records]
    known = [s for s in starts if s is not None]
    if not known:
        return UsageView([], True)
    since = min(known) - CANDIDATE_BEFORE
    try:
        read = await client.usage(since, model=MODEL_ID)
    except ProviderError as exc:
        if emit is not None:
            emit(Warning(f"could not read the account usage: {exc}"))
        return None
    events = list(getattr(read, "events", read))
    complete = bool(getattr(read, "complete", True))
    return UsageView(events, complete)


def _when(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def charges_by_output(view: UsageView) -> dict[str, float]:
    """``cost.amount`` by bare output URL, for events that name exactly one video."""
    found: dict[str, float] = {}
    for event in view.events:
        if event.cost_usd is None or len(event.output_urls) != 1:
            continue
        found[bare_url(event.output_urls[0])] = event.cost_usd
    return found


@dataclass(frozen=True)
class Candidate:
    """A charge that might be an in-doubt submit's job; the user decides."""

    event_id: str
    created_at: str
    cost_usd: float | None
    status: str
    mode: str
    output_urls: list[str]
    offset_seconds: float

    def to_json(self) -> dict[str, Any]:
        """The candidate as JSON."""
        return {
            "event_id": self.event_id,
            "created_at": self.created_at,
            "cost_usd": self.cost_usd,
            "status": self.status,
            "mode": self.mode,
            "output_urls": self.output_urls,
            "offset_seconds": round(self.offset_seconds, 1),
        }


def candidates(record: JobRecord, view: UsageView, claimed: set[str]) -> list[Candidate]:
    """Charges stamped near ``record``'s submit that no journal record claims, nearest first.

    ``claimed`` holds the bare output URLs and adopted event ids of every journal record. The
    window is wide on purpose (clocks differ, creation and billing lag); mode and status are
    shown, not filtered on: their spelling is not documented.
    """
    sent = _when(record.started_at)
    if sent is None:
        return []
    found = []
    for event in view.events:
        if event.created_at is None:
            continue
        if event.event_id and event.event_id in claimed:
            continue
        if any(bare_url(u) in claimed for u in event.output_urls):
            continue
        offset = (event.created_at - sent).total_seconds()
        if not -CANDIDATE_BEFORE.total_seconds() <= offset <= CANDIDATE_AFTER.total_seconds():
            continue
        found.append(
            Candidate(
                event_id=event.event_id or "",
                created_at=event.created_at.isoformat(timespec="seconds"),
                cost_usd=event.cost_usd,
                status=event.status,
                mode=event.mode or "",
                output_urls=event.output_urls,
                offset_seconds=offset,
            )
        )
    return sorted(found, key=lambda c: abs(c.offset_seconds))


def claimed_by(records: Iterable[JobRecord]) -> set[str]:
    """Bare output URLs and adopted event ids of journal records: charges already ours."""
    claimed: set[str] = set()
    for record in records:
        claimed.update(bare_url(u) for u in record.output_urls)
        if record.adopted_event:
            claimed.add(record.adopted_event)
    return claimed
