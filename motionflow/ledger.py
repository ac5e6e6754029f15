"""The ledger of paid jobs, read from the journal: what ``motionflow jobs`` and ``spend`` show.

Every paid job has a journal record (``cache/journal.py``) holding its estimate and, once the
usage API was read, ``cost.amount`` as actually charged. Records replaced by a deliberate
resubmission are kept under ``journal/archive/``, so the ledger still counts what they cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from motionflow.cache.journal import JobRecord, Journal

__all__ = ["JobRow", "SpendRow", "job_rows", "pending_jobs", "spend_rows"]

# States in which the service charged for the job (a failed job with an id was accepted).
_CHARGED = frozenset({"submitted", "completed", "stored", "lost", "failed"})


@dataclass(frozen=True)
class JobRow:
    """One job as ``motionflow jobs`` lists it."""

    state: str
    job_id: str
    recipe: str
    stage: str
    label: str
    provider: str
    age_seconds: float
    estimated_usd: float
    actual_usd: float | None
    error: str
    archived: bool
    key: str
    redownload: bool = False

    @property
    def free(self) -> bool:
        """Simulated jobs cost nothing, wherever they are shown."""
        return self.provider == "simulate"

    def to_json(self) -> dict[str, Any]:
        """The row as JSON."""
        return {
            "state": self.state,
            "job_id": self.job_id,
            "recipe": self.recipe,
            "stage": self.stage,
            "label": self.label,
            "provider": self.provider,
            "age_seconds": round(self.age_seconds, 1),
            "estimated_usd": 0.0 if self.free else self.estimated_usd,
            "actual_usd": 0.0 if self.free else self.actual_usd,
            "error": self.error,
            "archived": self.archived,
            "key": self.key,
            "redownload": self.redownload,
        }


def _age(record: JobRecord, now: datetime) -> float:
    try:
        started = datetime.fromisoformat(record.started_at)
    except ValueError:
        return 0.0
    return max((now - started).total_seconds(), 0.0)


def _rows(cache_root: Path, *, archived: bool) -> list[tuple[JobRecord, bool]]:
    journal = Journal(cache_root)
    current = {r.key + r.started_at for r in journal.all()}
    return [(r, r.key + r.started_at not in current) for r in journal.all(archived=archived)]


def job_rows(cache_root: Path, *, archived: bool = False) -> list[JobRow]:
    """The journal's jobs, oldest first; with ``archived``, replaced ones too.

    Raises:
        CacheError: a journal record cannot be read.
    """
    now = datetime.now(UTC)
    return [
        JobRow(
            state=r.state,
            job_id=r.job_id or "",
            recipe=r.recipe,
            stage=r.stage or r.label.split("[", 1)[0],
            label=r.label,
            provider=r.provider,
            age_seconds=_age(r, now),
            estimated_usd=r.estimated_usd,
            actual_usd=r.actual_usd,
            error=r.error or "",
            archived=old,
            key=r.key,
            redownload=r.redownload,
        )
        for r, old in _rows(cache_root, archived=archived)
    ]


@dataclass
class SpendRow:
    """Spending of one group (a recipe, a stage or a day)."""

    group: str
    jobs: int = 0
    estimated_usd: float = 0.0
    charged_usd: float = 0.0
    unconfirmed: int = 0
    in_doubt: int = 0
    in_doubt_usd: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The row as JSON."""
        return {
            "group": self.group,
            "jobs": self.jobs,
            "estimated_usd": round(self.estimated_usd, 2),
            "charged_usd": round(self.charged_usd, 2),
            "unconfirmed": self.unconfirmed,
            "in_doubt": self.in_doubt,
            "in_doubt_usd": round(self.in_doubt_usd, 2),
        }


def spend_rows(cache_root: Path, *, by: str, simulated: bool = False) -> list[SpendRow]:
    """Paid jobs summed by ``recipe``, ``stage`` or ``day`` (UTC, the submit's day).

    Each charge is counted once: a job is counted by its id (a record that only downloads an
    earlier record's video again adds nothing), ``charged_usd`` adds ``cost.amount`` where the
    usage API named it and the estimate where it did not (``unconfirmed`` counts those).
    Submits in doubt are not charges: they are counted apart (``in_doubt``), since the user
    decides what they were. Jobs refused before being charged are not charges; simulated jobs
    are left out unless ``simulated``, and then cost $0.

    Raises:
        CacheError: a journal record cannot be read.
    """
    groups: dict[str, SpendRow] = {}
    seen: set[str] = set()
    for record, _ in _rows(cache_root, archived=True):
        free = record.provider == "simulate"
        if free and not simulated:
            continue
        doubt = record.state in {"in_doubt", "submitting"}
        if not doubt and record.state not in _CHARGED:
            continue
        if record.state == "failed" and not record.job_id:
            continue  # refused at submit (400/422): nothing was charged
        charge = record.job_id or record.adopted_event
        if not doubt and (record.redownload or (charge and charge in seen)):
            continue  # the same job's video fetched again: no new charge
        if charge:
            seen.add(charge)
        if by == "recipe":
            name = record.recipe
        elif by == "stage":
            name = f"{record.recipe}/{record.stage or record.label.split('[', 1)[0]}"
        else:
            name = record.started_at[:10]
        row = groups.setdefault(name, SpendRow(name))
        estimate = 0.0 if free else record.estimated_usd
        if doubt:
            row.in_doubt += 1
            row.in_doubt_usd += estimate
            continue
        row.jobs += 1
        row.estimated_usd += estimate
        if free:
            continue
        if record.actual_usd is not None:
            row.charged_usd += record.actual_usd
        else:
            row.charged_usd += record.estimated_usd
            row.unconfirmed += 1
    return [groups[name] for name in sorted(groups)]


def pending_jobs(cache_root: Path) -> dict[str, int]:
    """Paid jobs of the cache waiting on the user or the service, by kind.

    ``in_flight``: paid for, the video still to be fetched (``motionflow jobs collect``, or any
    run, fetches it); ``in_doubt``: a submit whose fate the user decides (``motionflow jobs``).

    Raises:
        CacheError: a journal record cannot be read.
    """
    counts = {"in_flight": 0, "in_doubt": 0}
    for record in Journal(cache_root).all():
        if record.provider == "simulate":
            continue
        if record.state in {"submitted", "completed"}:
            counts["in_flight"] += 1
        elif record.state in {"in_doubt", "submitting"}:
            counts["in_doubt"] += 1
    return counts


def pending_note(counts: dict[str, int]) -> str:
    """One line saying what is pending and the command for it, or ``""``."""
    parts = []
    if counts.get("in_flight"):
        parts.append(
            f"{counts['in_flight']} paid job(s) are still to be fetched (the service keeps a "
            "finished job for one hour): run `motionflow jobs collect`"
        )
    if counts.get("in_doubt"):
        parts.append(
            f"{counts['in_doubt']} submit(s) are in doubt (maybe charged): see `motionflow jobs`"
        )
    return "; ".join(parts)
