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

__all__ = ["JobRow", "SpendRow", "job_rows", "spend_rows"]

# States in which the service (may have) charged for the job.
_CHARGED = frozenset({"submitted", "completed", "stored", "lost", "in_doubt", "failed"})


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
            "estimated_usd": self.estimated_usd,
            "actual_usd": self.actual_usd,
            "error": self.error,
            "archived": self.archived,
            "key": self.key,
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

    def to_json(self) -> dict[str, Any]:
        """The row as JSON."""
        return {
            "group": self.group,
            "jobs": self.jobs,
            "estimated_usd": round(self.estimated_usd, 2),
            "charged_usd": round(self.charged_usd, 2),
            "unconfirmed": self.unconfirmed,
        }


def spend_rows(cache_root: Path, *, by: str, simulated: bool = False) -> list[SpendRow]:
    """Paid jobs summed by ``recipe``, ``stage`` or ``day`` (UTC, the submit's day).

    ``charged_usd`` adds ``cost.amount`` where the usage API reported it, and the estimate
    where it did not (``unconfirmed`` counts those). Jobs refused before being charged are
    not in the journal; simulated jobs are left out unless ``simulated``.

    Raises:
        CacheError: a journal record cannot be read.
    """
    groups: dict[str, SpendRow] = {}
    for record, _ in _rows(cache_root, archived=True):
        if record.state not in _CHARGED or (record.provider == "simulate" and not simulated):
            continue
        if record.state == "failed" and not record.job_id:
            continue  # refused at submit (400/422): nothing was charged
        if by == "recipe":
            name = record.recipe
        elif by == "stage":
            name = f"{record.recipe}/{record.stage or record.label.split('[', 1)[0]}"
        else:
            name = record.started_at[:10]
        row = groups.setdefault(name, SpendRow(name))
        row.jobs += 1
        row.estimated_usd += record.estimated_usd
        if record.actual_usd is not None:
            row.charged_usd += record.actual_usd
        else:
            row.charged_usd += record.estimated_usd
            row.unconfirmed += 1
    return [groups[name] for name in sorted(groups)]
