"""The shared sliding-window rate limiter, with a fake clock and sleep."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motionflow.errors import UsageError
from motionflow.providers.ratelimit import FUTURE_TOLERANCE, MAX_PENALTY, WINDOW, RateLimiter


class FakeTime:
    """A wall clock that only moves when someone sleeps."""

    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(t: FakeTime, per_minute: int, state_dir: Path | None = None) -> RateLimiter:
    return RateLimiter(per_minute, state_dir=state_dir, clock=t.clock, sleep=t.sleep)


@pytest.mark.parametrize("shared", [False, True])
def test_the_window_slides(tmp_path: Path, shared: bool) -> None:
    t = FakeTime()
    lim = limiter(t, 3, tmp_path if shared else None)

    async def scenario() -> None:
        for _ in range(3):
            await lim.acquire()
        assert t.sleeps == []
        t.now += 20  # the first three are now 20 s old
        await lim.acquire()  # waits until the oldest is 60 s old
        assert t.sleeps == [pytest.approx(40.0)]
        t.now += 59.9
        await lim.acquire()  # only the t=60 request is still in the window: no wait
        assert len(t.sleeps) == 1

    asyncio.run(scenario())


def test_concurrent_acquirers_in_one_process_never_exceed_the_budget() -> None:
    t = FakeTime()
    lim = limiter(t, 5)
    granted: list[float] = []

    async def one() -> None:
        await lim.acquire()
        granted.append(t.now)

    async def scenario() -> None:
        await asyncio.gather(*(one() for _ in range(12)))

    asyncio.run(scenario())
    granted.sort()
    for i, when in enumerate(granted):
        assert sum(1 for other in granted[: i + 1] if when - other < 60) <= 5


def test_two_instances_on_one_state_dir_share_the_budget(tmp_path: Path) -> None:
    t = FakeTime()
    a, b = limiter(t, 4, tmp_path), limiter(t, 4, tmp_path)

    async def scenario() -> None:
        await a.acquire()
        await b.acquire()
        await a.acquire()
        await b.acquire()
        assert t.sleeps == []
        await b.acquire()  # a fifth request in the minute, whoever makes it, must wait
        assert t.sleeps == [pytest.approx(60.0)]

    asyncio.run(scenario())
    assert (tmp_path / "ratelimit" / "window.json").is_file()


def test_separate_state_dirs_do_not_share(tmp_path: Path) -> None:
    t = FakeTime()
    a, b = limiter(t, 1, tmp_path / "one"), limiter(t, 1, tmp_path / "two")

    async def scenario() -> None:
        await a.acquire()
        await b.acquire()

    asyncio.run(scenario())
    assert t.sleeps == []


@pytest.mark.parametrize("shared", [False, True])
def test_penalise_makes_every_acquirer_wait(tmp_path: Path, shared: bool) -> None:
    t = FakeTime()
    a = limiter(t, 50, tmp_path if shared else None)
    b = limiter(t, 50, tmp_path) if shared else a

    async def scenario() -> None:
        await a.acquire()
        a.penalise(7.5)
        a.penalise(2.0)  # a shorter penalty never shortens a longer one
        await b.acquire()
        assert t.sleeps == [pytest.approx(7.5)]
        await b.acquire()
        assert len(t.sleeps) == 1

    asyncio.run(scenario())


def test_a_torn_state_file_starts_a_fresh_window(tmp_path: Path) -> None:
    t = FakeTime()
    (tmp_path / "ratelimit").mkdir()
    (tmp_path / "ratelimit" / "window.json").write_text("{not json")
    asyncio.run(limiter(t, 1, tmp_path).acquire())
    assert t.sleeps == []


def test_the_budget_must_be_positive() -> None:
    with pytest.raises(UsageError, match="at least 1"):
        RateLimiter(0)


class WaitObservedError(Exception):
    """Stops an acquire after its first wait."""


def test_another_process_on_the_same_cache_spends_the_same_budget(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from motionflow.providers.ratelimit import RateLimiter

        async def main() -> None:
            lim = RateLimiter(3, state_dir=Path(sys.argv[1]))
            for _ in range(3):
                await lim.acquire()

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        raise WaitObservedError  # one observed wait is enough

    lim = RateLimiter(3, state_dir=tmp_path, clock=time.time, sleep=sleep)
    with pytest.raises(WaitObservedError):
        asyncio.run(lim.acquire())
    assert len(waits) == 1 and 50 < waits[0] <= 60


class YieldingTime(FakeTime):
    """Like FakeTime, but a sleep lets other tasks run first, as a real one does."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
        await super().sleep(seconds)


def test_a_full_window_serves_submits_first_then_the_oldest_polls() -> None:
    t = YieldingTime()
    lim = limiter(t, 2)
    order: list[str] = []

    async def request(name: str, priority: tuple[float, ...]) -> None:
        await lim.acquire(priority)
        order.append(name)

    async def scenario() -> None:
        await lim.acquire()
        await lim.acquire()  # the window is full until t+60
        waiting = [
            asyncio.create_task(request("poll of a young job", (1.0, 50.0))),
            asyncio.create_task(request("poll of an old job", (1.0, 10.0))),
            asyncio.create_task(request("usage", (2.0,))),
            asyncio.create_task(request("submit", (0.0,))),
        ]
        await asyncio.gather(*waiting)

    asyncio.run(scenario())
    assert order == ["submit", "poll of an old job", "poll of a young job", "usage"]


@pytest.mark.parametrize("shared", [False, True])
def test_a_request_counts_from_its_answer(tmp_path: Path, shared: bool) -> None:
    t = FakeTime()
    lim = limiter(t, 1, tmp_path if shared else None)

    async def scenario() -> float:
        stamp = await lim.acquire()
        t.now += 5.0  # the answer took 5 s: the service may have counted it only then
        lim.sent(stamp)
        start = t.now
        await lim.acquire()
        return t.now - start

    waited = asyncio.run(scenario())
    assert waited == pytest.approx(60.0)  # 60 s from the answer, not 55 s from the send


# -- clock steps: a monotonic clock for waiting, clamped stamps from the future ----------------


class SteppedTime:
    """A monotonic clock that sleeping advances, and a wall clock that can also be stepped."""

    def __init__(self) -> None:
        self.mono = 5_000.0
        self.offset = 1.7e9  # wall = mono + offset
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.mono + self.offset

    async def sleep(self, seconds: float) -> None:
        assert 0 < seconds < 10_000, seconds  # a runaway wait fails the example, not the run
        self.sleeps.append(seconds)
        self.mono += seconds


def stepped(t: SteppedTime, per_minute: int, state_dir: Path | None = None) -> RateLimiter:
    return RateLimiter(
        per_minute, state_dir=state_dir, clock=t.wall, monotonic=t.monotonic, sleep=t.sleep
    )


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("step", [-3600.0, -61.0, -5.0, 3600.0])
def test_a_wall_clock_step_never_stalls_this_process(
    tmp_path: Path, shared: bool, step: float
) -> None:
    t = SteppedTime()
    lim = stepped(t, 3, tmp_path if shared else None)

    async def scenario() -> None:
        for _ in range(3):
            await lim.acquire()
        t.offset += step
        t.mono += 1
        await lim.acquire()  # the window is measured on the monotonic clock: 59 s, not 59 + step
        assert t.sleeps == [pytest.approx(59.0)]
        t.mono += 60
        await lim.acquire()
        assert len(t.sleeps) == 1

    asyncio.run(scenario())


def write_window(state_dir: Path, **data: object) -> None:
    (state_dir / "ratelimit").mkdir(parents=True, exist_ok=True)
    (state_dir / "ratelimit" / "window.json").write_text(json.dumps(data))


def first_wait(t: SteppedTime, lim: RateLimiter) -> float:
    start = t.mono
    asyncio.run(lim.acquire())
    return t.mono - start


def test_stamps_from_the_future_count_for_one_window_at_most(tmp_path: Path) -> None:
    t = SteppedTime()
    future = t.wall() + 3600  # another process's stamps, written before the clock stepped back
    write_window(tmp_path, stamps=[future] * 2, owners=["other", "other"], blocked_until=0.0)
    lim = stepped(t, 2, tmp_path)
    assert first_wait(t, lim) == pytest.approx(60.0)  # counted, from now: one window
    saved = json.loads((tmp_path / "ratelimit" / "window.json").read_text())
    assert max(saved["stamps"]) <= t.wall()  # clamped in the file too, for everyone


def test_a_stamp_slightly_ahead_is_left_alone(tmp_path: Path) -> None:
    t = SteppedTime()
    ahead = t.wall() + FUTURE_TOLERANCE / 2
    write_window(tmp_path, stamps=[ahead], owners=["other"], blocked_until=0.0)
    lim = stepped(t, 1, tmp_path)
    assert first_wait(t, lim) == pytest.approx(WINDOW + FUTURE_TOLERANCE / 2)
    assert t.sleeps[0] == pytest.approx(WINDOW)  # no single wait longer than the window


@pytest.mark.parametrize("until", [MAX_PENALTY + 60, 3600, 1e6, 1e12, float("inf")])
def test_a_penalty_longer_than_any_penalty_is_dropped(tmp_path: Path, until: float) -> None:
    # No penalty is longer than MAX_PENALTY: one further ahead was written by a clock that
    # has stepped back since, and waiting it out would outlive a job's retention.
    t = SteppedTime()
    data = {"stamps": [], "blocked_until": t.wall() + until, "blocked_by": "other"}
    (tmp_path / "ratelimit").mkdir()
    (tmp_path / "ratelimit" / "window.json").write_text(json.dumps(data))
    assert first_wait(t, stepped(t, 5, tmp_path)) == 0.0


def test_a_penalty_within_the_ceiling_is_honoured(tmp_path: Path) -> None:
    t = SteppedTime()
    data = {"stamps": [], "blocked_until": t.wall() + 120, "blocked_by": "other"}
    (tmp_path / "ratelimit").mkdir()
    (tmp_path / "ratelimit" / "window.json").write_text(json.dumps(data))
    assert first_wait(t, stepped(t, 5, tmp_path)) == pytest.approx(120)


def test_penalise_is_capped_at_the_longest_retry_after(tmp_path: Path) -> None:
    t = SteppedTime()
    lim = stepped(t, 5, tmp_path)
    lim.penalise(86_400)
    assert first_wait(t, lim) == pytest.approx(MAX_PENALTY)
    assert first_wait(t, stepped(t, 5, tmp_path)) == 0.0  # and for the other processes


def test_a_window_file_from_an_older_version_is_still_shared(tmp_path: Path) -> None:
    t = SteppedTime()
    write_window(tmp_path, stamps=[t.wall() - 10, t.wall() - 5], blocked_until=0.0)
    assert first_wait(t, stepped(t, 2, tmp_path)) == pytest.approx(50.0)


def test_unreadable_stamps_are_dropped(tmp_path: Path) -> None:
    t = SteppedTime()
    write_window(tmp_path, stamps=["x", None, float("nan")], owners=[1, 2, 3], blocked_until="x")
    assert first_wait(t, stepped(t, 1, tmp_path)) == 0.0


def test_after_a_backward_step_another_process_resumes_within_one_window(tmp_path: Path) -> None:
    t = SteppedTime()
    a, b = stepped(t, 3, tmp_path), stepped(t, 3, tmp_path)

    async def fill() -> None:
        for _ in range(3):
            await a.acquire()

    asyncio.run(fill())
    t.offset -= 86_400  # a day back: the stamps of a now lie a day in the future
    assert first_wait(t, b) <= WINDOW
    assert first_wait(t, a) == 0.0  # a's own stamps were measured on its monotonic clock


# -- the invariants, as properties -----------------------------------------------------------

Op = tuple[str, float]
ACQUIRE = st.tuples(st.just("acquire"), st.integers(0, 1).map(float))
ADVANCE = st.tuples(st.just("advance"), st.floats(0, 90))
STEP = st.tuples(st.just("step"), st.floats(-7200, 7200))
PENALISE = st.tuples(st.just("penalise"), st.floats(0, 400))
SENT = st.tuples(st.just("sent"), st.floats(0, 10))
OPS = st.lists(st.one_of(ACQUIRE, ADVANCE, STEP, PENALISE, SENT), max_size=40)
CALM_OPS = st.lists(st.one_of(ACQUIRE, ADVANCE, STEP, SENT), max_size=40)  # no penalty


@dataclass
class Grant:
    start: float
    end: float
    penalty_left: float  # the (clamped) penalty in force when the acquire began


def play(ops: list[Op], per_minute: int, state_dir: Path | None, instances: int) -> list[Grant]:
    """Run ``ops`` against ``instances`` limiters on one state (processes on one cache)."""
    t = SteppedTime()
    limiters = [stepped(t, per_minute, state_dir) for _ in range(instances)]
    grants: list[Grant] = []
    stamps: list[tuple[RateLimiter, float]] = []
    blocked_until = 0.0  # monotonic

    async def scenario() -> None:
        nonlocal blocked_until
        for name, value in ops:
            if name == "acquire":
                lim = limiters[int(value) % instances]
                start = t.mono
                stamps.append((lim, await lim.acquire()))
                grants.append(Grant(start, t.mono, max(blocked_until - start, 0.0)))
            elif name == "advance":
                t.mono += value
            elif name == "step":
                t.offset += value
            elif name == "penalise":
                limiters[0].penalise(value)
                blocked_until = max(blocked_until, t.mono + min(value, MAX_PENALTY))
            elif stamps:  # "sent": an answer arrives ``value`` seconds later
                t.mono += value
                lim, stamp = stamps.pop(0)
                lim.sent(stamp)

    asyncio.run(scenario())
    return grants


def check_budget(grants: list[Grant], per_minute: int) -> None:
    """Invariant 1: never more than ``per_minute`` grants in any 60 s of the true clock.

    To a microsecond: wall-clock stamps near 1.7e9 carry rounding errors of about 1e-7 s.
    """
    ends = sorted(g.end for g in grants)
    for i, end in enumerate(ends):
        in_window = [e for e in ends[: i + 1] if end - e < WINDOW - 1e-6]
        assert len(in_window) <= per_minute, (end, in_window)


@settings(derandomize=True, database=None, max_examples=200, deadline=None)
@given(ops=OPS, per_minute=st.integers(1, 4), shared=st.booleans())
def test_one_process_keeps_the_budget_and_bounded_waits_whatever_the_clock_does(
    ops: list[Op], per_minute: int, shared: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        grants = play(ops, per_minute, Path(tmp) if shared else None, instances=1)
    check_budget(grants, per_minute)
    for g in grants:  # invariants 2 and 3: one window, or the penalty in force, at most
        assert g.end - g.start <= max(WINDOW, g.penalty_left) + 1e-6


@settings(derandomize=True, database=None, max_examples=200, deadline=None)
@given(ops=OPS, per_minute=st.integers(1, 4))
def test_processes_sharing_a_window_keep_the_budget_across_backward_steps(
    ops: list[Op], per_minute: int
) -> None:
    backward = [(n, -abs(v)) if n == "step" else (n, v) for n, v in ops]
    with tempfile.TemporaryDirectory() as tmp:
        grants = play(backward, per_minute, Path(tmp), instances=2)
    check_budget(grants, per_minute)


@settings(derandomize=True, database=None, max_examples=200, deadline=None)
@given(ops=OPS, per_minute=st.integers(1, 4))
def test_processes_sharing_a_window_wait_one_window_plus_the_penalty_at_most(
    ops: list[Op], per_minute: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        grants = play(ops, per_minute, Path(tmp), instances=2)
    penalised = any(name == "penalise" for name, _ in ops)
    for g in grants:
        # Another process's penalty, stretched by a backward step, is clamped to MAX_PENALTY.
        penalty = MAX_PENALTY if penalised else 0.0
        assert g.end - g.start <= max(WINDOW + FUTURE_TOLERANCE, penalty) + 1e-6


@settings(derandomize=True, database=None, max_examples=200, deadline=None)
@given(
    ops=CALM_OPS,
    back=st.floats(0, 1e7),
    per_minute=st.integers(1, 4),
    shared=st.booleans(),
)
@pytest.mark.slow
def test_acquisitions_resume_within_one_window_after_a_backward_step(
    ops: list[Op], back: float, per_minute: int, shared: bool
) -> None:
    burst = [("acquire", float(n % 2)) for n in range(per_minute * 2)]
    after = [("step", -back), ("acquire", 0.0), ("acquire", 1.0)]
    with tempfile.TemporaryDirectory() as tmp:
        grants = play([*ops, *burst, *after], per_minute, Path(tmp) if shared else None, 2)
    for g in grants[-2:]:
        assert g.end - g.start <= WINDOW + FUTURE_TOLERANCE + 1e-6
