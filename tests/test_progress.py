"""What a paid run shows while it works: heartbeats when piped, a live table on a terminal.

The CLI runs as a subprocess (so its output is not a terminal) against the fake server, whose
jobs take a few seconds; heartbeats come every fraction of a second. Nothing here asserts how
long anything took.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from service import Service

from motionflow import events as ev
from motionflow.cli.progress import DEFAULT_JOB_SECONDS, RunProgress, duration, heartbeat_seconds
from motionflow.errors import UsageError

OUTFITS = ["red jacket", "white hoodie", "blue coat"]
SLOW = pytest.mark.fake(time_scale=1.0, queue_seconds=1.0, processing_seconds=2.0)
ENV = {"MOTIONFLOW_HEARTBEAT_SECONDS": "0.2", "EMPIRIOLABS_POLL_SECONDS": "0.2"}
BEAT = re.compile(
    r"^(\d+) jobs? in flight \(([^)]*)\), (\S+) elapsed, \$(\d+\.\d\d) committed, "
    r"\$(\d+\.\d\d) spent, ETA [^;]+; (\d+)/(\d+) stage instances done$"
)


def _beats(text: str) -> list[re.Match[str]]:
    return [m for line in text.splitlines() if (m := BEAT.match(line))]


@SLOW
@pytest.mark.slow
def test_piped_paid_run_prints_heartbeats_with_jobs_states_and_money(service: Service) -> None:
    service.recipe(OUTFITS)
    proc = service.cli("run", "paid.yaml", env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    beats = _beats(proc.stderr)
    assert beats, proc.stderr
    states: set[str] = set()
    for beat in beats:
        count, breakdown, _, committed, spent, done, total = beat.groups()
        parts = [part.split(" ", 1) for part in breakdown.split(", ")]
        assert sum(int(n) for n, _ in parts) == int(count)
        states |= {state for _, state in parts}
        # three jobs of $0.42: what is in flight is committed, what is over is spent
        assert float(committed) == pytest.approx(0.42 * int(count))
        assert float(committed) + float(spent) <= 1.26 + 1e-9
        assert int(total) == 3 and int(done) <= 3
    assert states & {"queued", "processing"}, states
    assert states <= {"submitting", "submitted", "queued", "processing", "downloading"}
    assert not _beats(proc.stdout)  # heartbeats go to stderr
    # the summary still ends the run
    assert "run: paid" in proc.stdout and "jobs submitted" in proc.stdout
    assert proc.stdout.count("submitted job_") == 3


@SLOW
@pytest.mark.slow
def test_json_stdout_stays_clean_while_heartbeats_go_to_stderr(service: Service) -> None:
    service.recipe(OUTFITS[:2])
    proc = service.cli("run", "paid.yaml", "--json", env=ENV)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # nothing but the JSON summary
    assert result["jobs_submitted"] == 2
    assert _beats(proc.stderr)


@SLOW
@pytest.mark.slow
def test_quiet_prints_only_the_summary(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    proc = service.cli("run", "paid.yaml", "-q", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "in flight" not in proc.stdout + proc.stderr
    assert "submitted job_" not in proc.stdout
    assert "run: paid" in proc.stdout


def test_a_bad_heartbeat_setting_is_refused(service: Service) -> None:
    service.recipe(OUTFITS[:1])
    proc = service.cli("run", "paid.yaml", env={"MOTIONFLOW_HEARTBEAT_SECONDS": "soon"})
    assert proc.returncode == 2
    assert "MOTIONFLOW_HEARTBEAT_SECONDS" in proc.stderr
    assert service.fake.submissions == []


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "x"])
def test_heartbeat_seconds_must_be_positive(raw: str) -> None:
    with pytest.raises(UsageError, match="MOTIONFLOW_HEARTBEAT_SECONDS"):
        heartbeat_seconds({"MOTIONFLOW_HEARTBEAT_SECONDS": raw})
    assert heartbeat_seconds({}) == 30.0
    assert heartbeat_seconds({"MOTIONFLOW_HEARTBEAT_SECONDS": "0.5"}) == 0.5


# -- the renderer, fed events by hand on a fake clock -------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _update(key: str, state: str, job_id: str = "", usd: float = 0.42) -> ev.JobUpdate:
    return ev.JobUpdate("take", f"take[{key}]", key, state, job_id, usd)


def _progress(clock: Clock, *, terminal: bool = False) -> tuple[RunProgress, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=120)
    status = Console(file=io.StringIO(), width=120)
    return RunProgress(console, 4, heartbeat=3600, status=status, clock=clock), out


def test_summary_counts_states_money_and_eta_from_finished_jobs() -> None:
    clock = Clock()
    progress, _ = _progress(clock)
    with progress:
        assert progress.summary().startswith("no paid job in flight, 0s elapsed")
        for key in "abc":
            progress(_update(key, "submitting"))
        progress(_update("a", "queued", "job-a"))
        progress(_update("b", "processing", "job-b"))
        progress(_update("c", "processing", "job-c", usd=0.0))  # resumed: paid earlier
        clock.now += 10
        line = progress.summary()
        assert line.startswith("3 jobs in flight (1 queued, 2 processing), 10s elapsed")
        assert "$0.84 committed, $0.00 spent" in line
        assert f"ETA ~{duration(DEFAULT_JOB_SECONDS - 10)}?" in line  # nothing finished yet
        clock.now += 50
        progress(_update("a", "done", "job-a"))
        progress(ev.InstanceFinished("take", "take[a]", "a", 60.0))
        line = progress.summary()
        assert line.startswith("2 jobs in flight (2 processing), 1m00s elapsed")
        assert "$0.42 committed, $0.42 spent" in line and "1/4 stage instances done" in line
        assert "ETA any moment;" in line  # the others are as old as the one that took 60 s
        progress(_update("d", "submitting"))
        assert "ETA ~1m00s;" in progress.summary()  # a new job: the median job took 60 s
        progress(_update("d", "failed"))  # refused before a job id: nothing spent
        progress(_update("b", "failed", "job-b"))  # accepted, then failed: billed
        assert "$0.00 committed, $0.84 spent" in progress.summary()


def test_a_terminal_gets_a_live_table_of_jobs() -> None:
    clock = Clock()
    progress, _ = _progress(clock, terminal=True)
    with progress:
        assert progress.live
        progress(_update("a", "processing", "job-a"))
        clock.now += 75
        table = Console(file=io.StringIO(), width=120)
        table.print(progress.jobs_table())
        text = table.file.getvalue()  # type: ignore[attr-defined]
        assert "take[a]" in text and "processing" in text and "job-a" in text
        assert "1m15s" in text


def test_event_lines_are_kept_off_a_json_stdout() -> None:
    clock = Clock()
    out = io.StringIO()
    progress = RunProgress(Console(file=out), 1, as_json=True, heartbeat=3600, clock=clock)
    with progress:
        progress(ev.InstanceFinished("take", "take[a]", "a", 1.0))
        progress(ev.JobSubmitted("take", "take[a]", "empiriolabs", "job-a", 0.42))
    assert out.getvalue() == ""
