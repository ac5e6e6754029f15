"""Typed, frozen events the engine emits; the CLI renders them and tests assert on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = [
    "Event",
    "InstanceBlocked",
    "InstanceCached",
    "InstanceFailed",
    "InstanceFinished",
    "InstanceStarted",
    "JobCompleted",
    "JobResumed",
    "JobSubmitted",
    "JobUpdate",
    "OutputWritten",
    "Reporter",
    "RunStarted",
    "Warning",
]


@dataclass(frozen=True)
class Event:
    """Base of every event."""


@dataclass(frozen=True)
class RunStarted(Event):
    """The plan is ready: how many instances will run and be reused, and the estimate."""

    recipe: str
    to_run: int
    cached: int
    estimated_usd: float


@dataclass(frozen=True)
class InstanceCached(Event):
    """An instance's result was found in the cache; nothing ran."""

    stage: str
    label: str
    key: str
    saved_usd: float


@dataclass(frozen=True)
class InstanceStarted(Event):
    """An instance started running."""

    stage: str
    label: str
    key: str


@dataclass(frozen=True)
class InstanceFinished(Event):
    """An instance ran and its result is in the cache."""

    stage: str
    label: str
    key: str
    seconds: float


@dataclass(frozen=True)
class InstanceFailed(Event):
    """An instance failed; its dependents will be blocked."""

    stage: str
    label: str
    error: str


@dataclass(frozen=True)
class InstanceBlocked(Event):
    """An instance did not run because something it needs failed."""

    stage: str
    label: str
    because: str


@dataclass(frozen=True)
class JobSubmitted(Event):
    """A generation job was submitted to a provider (simulated jobs included)."""

    stage: str
    label: str
    provider: str
    job_id: str
    estimated_usd: float


@dataclass(frozen=True)
class JobResumed(Event):
    """A job submitted by an earlier (interrupted) run is picked up again, not resubmitted."""

    stage: str
    label: str
    job_id: str
    state: str


@dataclass(frozen=True)
class JobCompleted(Event):
    """A generation job finished and its video was stored."""

    stage: str
    label: str
    job_id: str
    billed_seconds: float


@dataclass(frozen=True)
class JobUpdate(Event):
    """A paid job in flight changed state; progress displays show every job this way.

    Attributes:
        stage: the stage of the instance the job is for.
        label: the instance (or, for a job collected from an earlier run, its record's label).
        key: the cache key, which tells jobs apart.
        state: ``submitting`` (publishing references, sending the POST), ``queued`` and
            ``processing`` (as the service last said), ``downloading``, then one of
            ``done``, ``failed`` (or refused, lost, in doubt: see the instance's failure) and
            ``pending`` (still in flight, to be collected later). The last three end the job
            for this run.
        job_id: the service's job id, once known.
        usd: what this run pays for the job: its estimate when this run submits it, 0 for a
            job an earlier run paid for (resumed, collected) and for simulated jobs.
    """

    stage: str
    label: str
    key: str
    state: str
    job_id: str = ""
    usd: float = 0.0


@dataclass(frozen=True)
class OutputWritten(Event):
    """A result was written (or refreshed) under out/."""

    path: Path


@dataclass(frozen=True)
class Warning(Event):
    """Something the user should know that does not stop the run."""

    message: str


class Reporter(Protocol):
    """Receives every event, in order, on the event loop's thread."""

    def __call__(self, event: Event) -> None:
        """Handle one event."""
        ...
