"""How ``motionflow run`` shows a run while it works: event lines, paid jobs, heartbeats.

It renders :mod:`motionflow.events`, which the library emits without printing anything. On a
terminal it is a live display: a bar of stage instances and a table of every paid job in
flight, with its state and age. Anywhere else (a pipe, a CI log) it prints one line per event
and, at least every ``MOTIONFLOW_HEARTBEAT_SECONDS`` (default 30), a heartbeat on stderr::

    3 jobs in flight (2 processing, 1 queued), 4m10s elapsed, $1.26 committed, $0.42 spent, ETA ~3m

*committed* is the estimate of the jobs in flight (a job being submitted included: an accepted
submit is billed whether or not anybody waits); *spent* is the estimate of this run's jobs that
were accepted and are over (done, failed, or left for ``jobs collect``). Jobs an earlier run paid
for (resumed, collected) and simulated jobs count $0. The ETA is when the job in flight longest
should finish, from the median duration of this run's finished jobs, or
:data:`DEFAULT_JOB_SECONDS` before any has finished (shown with ``?``).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from motionflow import events as ev
from motionflow.errors import UsageError

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "DEFAULT_JOB_SECONDS",
    "HEARTBEAT_ENV",
    "RunProgress",
    "duration",
    "heartbeat_seconds",
]

HEARTBEAT_ENV = "MOTIONFLOW_HEARTBEAT_SECONDS"
DEFAULT_HEARTBEAT_SECONDS = 30.0
DEFAULT_JOB_SECONDS = 180.0
"""The typical job duration assumed until a job of the run has finished (jobs take minutes)."""
_ENDED = frozenset({"done", "failed", "pending"})
_STATE_ORDER = ("submitting", "submitted", "queued", "processing", "downloading")
_TABLE_ROWS = 20


def heartbeat_seconds(env: Mapping[str, str] | None = None) -> float:
    """The heartbeat interval from ``MOTIONFLOW_HEARTBEAT_SECONDS`` (default 30).

    Raises:
        UsageError: the variable is set but is not a positive number.
    """
    raw = (os.environ if env is None else env).get(HEARTBEAT_ENV, "").strip()
    if not raw:
        return DEFAULT_HEARTBEAT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        msg = f"{HEARTBEAT_ENV}={raw!r} is not a positive number of seconds; fix or unset it"
        raise UsageError(msg)
    return value


def duration(seconds: float) -> str:
    """``4m10s``, ``52s``, ``1h05m``: a short, steady elapsed time."""
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass
class _Job:
    label: str
    state: str
    job_id: str
    usd: float
    started: float


class RunProgress:
    """Renders run events; a reporter for :func:`motionflow.engine.execute`.

    Args:
        console: where event lines and the live display go (stdout, or stderr with --json).
        total: stage instances in the plan.
        quiet: only the summary: no lines, no display, no heartbeat.
        as_json: stdout is for the JSON summary: no event lines; heartbeats on stderr.
        heartbeat: seconds between heartbeats when not on a terminal (None: from the
            environment, see :func:`heartbeat_seconds`).
        status: where heartbeats go (None: a console on stderr).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        console: Console,
        total: int,
        *,
        quiet: bool = False,
        as_json: bool = False,
        heartbeat: float | None = None,
        status: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.total = total
        self.lines = not (quiet or as_json)
        self.live = console.is_terminal and self.lines
        self.beats = not quiet and not self.live
        self.interval = heartbeat if heartbeat is not None else heartbeat_seconds()
        self._status = status
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._durations: list[float] = []
        self._spent = 0.0
        self._done = 0
        self._started = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.progress: Any = None
        self.task: Any = None

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> RunProgress:
        self._started = self._clock()
        if self.live:
            self.progress = _LiveProgress(self, console=self.console)
            self.progress.start()
            self.task = self.progress.add_task("running", total=self.total)
        elif self.beats:
            if self._status is None:
                self._status = Console(stderr=True, highlight=False, soft_wrap=True)
            self._thread = threading.Thread(
                target=self._beat, name="motionflow-heartbeat", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.progress is not None:
            self.progress.stop()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            line = self.summary()
            if self._status is not None and not self._stop.is_set():
                self._status.print(line, markup=False)

    # -- state --------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """How many paid jobs are in flight now."""
        with self._lock:
            return len(self._jobs)

    def _eta(self, jobs: Iterable[_Job], now: float) -> str:
        running = list(jobs)
        if not running:
            return ""
        typical = statistics.median(self._durations) if self._durations else DEFAULT_JOB_SECONDS
        left = max(typical - (now - job.started) for job in running)
        guess = "" if self._durations else "?"
        if left <= 0:
            return "ETA any moment" + guess
        return f"ETA ~{duration(left)}{guess}"

    def summary(self) -> str:
        """The heartbeat line: jobs in flight by state, elapsed time, money, ETA, instances."""
        now = self._clock()
        with self._lock:
            jobs = list(self._jobs.values())
            spent = self._spent
            done = self._done
            eta = self._eta(jobs, now)
        committed = sum(job.usd for job in jobs)
        elapsed = duration(now - self._started)
        instances = f"{done}/{self.total} stage instances done"
        if not jobs:
            money = f", ${spent:.2f} spent" if spent else ""
            return f"no paid job in flight, {elapsed} elapsed{money}, {instances}"
        states = Counter(job.state for job in jobs)
        ordered = sorted(states, key=lambda s: _STATE_ORDER.index(s) if s in _STATE_ORDER else 99)
        breakdown = ", ".join(f"{states[s]} {s}" for s in ordered)
        return (
            f"{_plural(len(jobs), 'job')} in flight ({breakdown}), {elapsed} elapsed, "
            f"${committed:.2f} committed, ${spent:.2f} spent, {eta}; {instances}"
        )

    def jobs_table(self) -> RenderableType:
        """Every paid job in flight: instance, state, job id, time since it was started."""
        now = self._clock()
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda job: job.started)
        table = Table(show_header=True, box=None, pad_edge=False)
        for name in ("job", "state", "id", "elapsed"):
            table.add_column(name, justify="right" if name == "elapsed" else "left")
        for job in jobs[:_TABLE_ROWS]:
            table.add_row(
                Text(job.label), job.state, Text(job.job_id or "-"), duration(now - job.started)
            )
        if len(jobs) > _TABLE_ROWS:
            table.add_row(f"... and {len(jobs) - _TABLE_ROWS} more", "", "", "")
        return table

    def _job(self, event: ev.JobUpdate) -> None:
        now = self._clock()
        with self._lock:
            job = self._jobs.get(event.key)
            if event.state in _ENDED:
                if job is None:
                    return
                del self._jobs[event.key]
                if event.state == "done":
                    self._durations.append(now - job.started)
                if job.job_id or event.job_id:  # accepted: billed, whatever became of it
                    self._spent += job.usd
                return
            if job is None:
                job = _Job(event.label, event.state, event.job_id, event.usd, now)
                self._jobs[event.key] = job
            job.state = event.state
            job.job_id = event.job_id or job.job_id
            job.usd = event.usd

    # -- the reporter -------------------------------------------------------------------------
    def __call__(self, event: ev.Event) -> None:
        """Handle one event (on the event loop's thread)."""
        line: str | None = None
        advance = False
        if isinstance(event, ev.JobUpdate):
            self._job(event)
        elif isinstance(event, ev.InstanceCached):
            advance = True
        elif isinstance(event, ev.InstanceStarted):
            if self.progress is not None:
                self.progress.update(self.task, description=f"running {escape(event.label)}")
        elif isinstance(event, ev.InstanceFinished):
            advance = True
            line = f"[green]✓[/] {escape(event.label)} ({event.seconds:.1f}s)"
        elif isinstance(event, ev.InstanceFailed):
            advance = True
            line = f"[red]✗ {escape(event.label)}[/]: {escape(event.error)}"
        elif isinstance(event, ev.InstanceBlocked):
            advance = True
            line = f"[yellow]- {escape(event.label)}[/] skipped: {escape(event.because)}"
        elif isinstance(event, ev.JobSubmitted):
            line = f"  submitted {event.job_id} ({event.provider}, ~${event.estimated_usd:.2f})"
        elif isinstance(event, ev.JobResumed):
            line = f"  resumed {event.job_id} ({event.state}; already paid, not submitted again)"
        elif isinstance(event, ev.Warning):
            line = f"[yellow]warning:[/] {escape(event.message)}"
        if advance:
            with self._lock:
                self._done += 1
            if self.progress is not None:
                self.progress.advance(self.task)
        if line and self.lines:
            self.console.print(line)


class _LiveProgress(Progress):
    """A rich progress bar followed by the jobs in flight and the heartbeat line."""

    def __init__(self, owner: RunProgress, *, console: Console) -> None:
        self.owner = owner  # before rich's constructor, which renders once
        super().__init__(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            refresh_per_second=4,
        )

    def get_renderables(self) -> Iterable[RenderableType]:
        """The bar, then (while paid jobs are in flight) their table and the summary line."""
        bar = self.make_tasks_table(self.tasks)
        if not self.owner.in_flight:
            yield bar
            return
        yield Group(bar, self.owner.jobs_table(), Text(self.owner.summary(), style="dim"))
