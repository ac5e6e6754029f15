"""A sliding-window request limiter shared by every motionflow process on one cache."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from motionflow.errors import CacheError, UsageError

__all__ = ["RateLimiter"]

_WINDOW = 60.0


class RateLimiter:
    """At most ``per_minute`` API requests in any 60 s, across processes sharing ``state_dir``.

    Call :meth:`acquire` before every request to the API (submits, polls, uploads, usage);
    downloads from the CDN do not count. With a ``state_dir`` the recent request times live in
    ``state_dir/ratelimit/window.json``, read and rewritten under an ``flock`` held only for
    that brief, await-free critical section, so several processes on one cache share one budget.
    Without it the window is kept in memory, shared by everything holding this instance.

    Args:
        per_minute: the request budget per sliding minute (the account limit is 50).
        state_dir: the cache directory to share the window through, or ``None``.
        clock: wall-clock seconds (shared across processes, so not monotonic).
        sleep: the coroutine used to wait; tests pass a fake that advances ``clock``.
    """

    def __init__(
        self,
        per_minute: int = 50,
        *,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_minute < 1:
            msg = f"the rate limit must allow at least 1 request a minute, not {per_minute!r}"
            raise UsageError(msg)
        self.per_minute = per_minute
        self._clock = clock
        self._sleep = sleep
        self._dir = state_dir / "ratelimit" if state_dir is not None else None
        self._stamps: list[float] = []
        self._blocked_until = 0.0
        self._waiting: list[tuple[float, ...]] = []
        self._seq = 0
        self._turn = asyncio.Event()

    def __repr__(self) -> str:
        where = str(self._dir) if self._dir else "memory"
        return f"RateLimiter(per_minute={self.per_minute}, state={where!r})"

    async def acquire(self, priority: tuple[float, ...] = (1.0,)) -> float:
        """Wait until a request fits in the window (and past any penalty), then record it.

        Waiters of this instance are served in ``priority`` order, lowest first, then first
        come first served: when the window is full, the client lets submits go before polls,
        and polls of older jobs before younger ones (the ones most likely to be done), so a
        saturated window is spent where it moves the work forward.

        Returns:
            The time recorded for the request; pass it to :meth:`sent` once the answer came.
        """
        self._seq += 1
        entry = (*priority, self._seq)
        heapq.heappush(self._waiting, entry)
        try:
            while True:
                if self._waiting[0] != entry:
                    await self._turn.wait()
                    continue
                wait, stamp = self._try_acquire()
                if wait <= 0:
                    return stamp
                await self._sleep(wait)
        finally:
            self._waiting.remove(entry)
            heapq.heapify(self._waiting)
            self._turn.set()  # the next head (if any) tries now
            self._turn = asyncio.Event()

    def sent(self, stamp: float) -> None:
        """Move a request's record to now, when its answer arrived.

        The service counts a request when it arrives, which can be well after it was sent
        (a busy server, a slow network); counting it from its answer instead keeps this
        window never ahead of the service's, so a full window never earns a 429.
        """
        with self._state() as (stamps, blocked):
            if stamp in stamps:
                stamps.remove(stamp)
                stamps.append(max(self._clock(), stamp))
                self._store(stamps, blocked)

    def penalise(self, retry_after: float) -> None:
        """Make every acquirer, in every process on this state, wait ``retry_after`` seconds."""
        with self._state() as (stamps, blocked):
            until = max(blocked, self._clock() + max(retry_after, 0.0))
            self._store(stamps, until)

    def _try_acquire(self) -> tuple[float, float]:
        """Record a request: ``(0, its time)``, or ``(how long to wait, 0)``."""
        with self._state() as (stamps, blocked):
            now = self._clock()
            # A stamp from the future (a clock stepped back) is kept: it still counts.
            recent = sorted(t for t in stamps if now - t < _WINDOW)
            if blocked > now:
                wait = blocked - now
            elif len(recent) >= self.per_minute:
                wait = recent[len(recent) - self.per_minute] + _WINDOW - now
            else:
                recent.append(now)
                wait = 0.0
            self._store(recent, blocked if blocked > now else 0.0)
            # Guard against a zero wait that would spin on a stamp exactly on the edge.
            return (max(wait, 0.001), 0.0) if wait > 0 else (0.0, now)

    @contextlib.contextmanager
    def _state(self) -> Iterator[tuple[list[float], float]]:
        if self._dir is None:
            yield list(self._stamps), self._blocked_until
            return
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            # The lock is a separate file: the data file is replaced, which would orphan a lock.
            fd = os.open(self._dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            msg = f"cannot use the rate-limit state in {str(self._dir)!r}: {exc}; check the cache"
            raise CacheError(msg) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for microseconds, never across an await
            try:
                yield self._read()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _read(self) -> tuple[list[float], float]:
        assert self._dir is not None
        try:
            raw = json.loads((self._dir / "window.json").read_text(encoding="utf-8"))
            stamps = [float(t) for t in raw["stamps"]]
            return stamps, float(raw.get("blocked_until", 0.0))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return [], 0.0  # missing or torn state: start a fresh window

    def _store(self, stamps: list[float], blocked_until: float) -> None:
        if self._dir is None:
            self._stamps, self._blocked_until = stamps, blocked_until
            return
        path = self._dir / "window.json"
        tmp = path.with_name(f"window.{os.getpid()}.tmp")
        text = json.dumps({"stamps": stamps, "blocked_until": blocked_until})
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            msg = f"cannot write the rate-limit state {str(path)!r}: {exc}; check the cache"
            raise CacheError(msg) from exc
