"""The shared sliding-window rate limiter, with a fake clock and sleep."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from motionflow.errors import UsageError
from motionflow.providers.ratelimit import RateLimiter


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
