"""A sliding-window request limiter shared by every motionflow process on one cache."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import json
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from motionflow.errors import CacheError, UsageError

__all__ = ["FUTURE_TOLERANCE", "MAX_PENALTY", "WINDOW", "RateLimiter"]

WINDOW = 60.0
"""The sliding window, in seconds."""
MAX_PENALTY = 300.0
"""The longest wait a penalty imposes: the longest ``Retry-After`` the client honours."""
FUTURE_TOLERANCE = 1.0
"""How far in the future another process's stamp may lie before it is clamped to now."""


@dataclass
class _Others:
    """What the shared file says about the other instances, read under the lock at ``wall``."""

    wall: float
    stamps: list[tuple[float, str]]  # (wall time, owner token), clamped, within the window
    blocked_until: float  # wall time; 0.0 when no other instance's penalty is in force
    blocked_by: str


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class RateLimiter:
    """At most ``per_minute`` API requests in any 60 s, across processes sharing ``state_dir``.

    Call :meth:`acquire` before every request to the API (submits, polls, uploads, usage);
    downloads from the CDN do not count. Each instance keeps its own grants on the process's
    monotonic clock, which all its waiting is measured by. With a ``state_dir`` it also
    publishes them, as wall-clock stamps tagged with the instance, in
    ``state_dir/ratelimit/window.json``, read and rewritten under an ``flock`` held only for
    that brief, await-free critical section, so several processes on one cache share one
    budget. Without it the window is kept in memory, shared by everything holding this
    instance.

    Invariants (``tests/test_ratelimit.py`` checks them with property tests):

    1. **Budget.** The grants of one instance number at most ``per_minute`` in any 60 s of its
       monotonic clock, whatever the wall clock does. The grants of all instances on one
       ``state_dir`` together keep that bound as long as the wall clock does not step forward
       (a forward step of S makes the others' stamps look S seconds older; a backward step
       only makes them count longer).
    2. **Bounded waits.** A penalty (:meth:`penalise`) lasts at most :data:`MAX_PENALTY`
       seconds, and no acquirer with the budget to itself waits longer than 60 s plus the
       penalty in force (plus :data:`FUTURE_TOLERANCE` for the stamps of other processes),
       whatever clock steps came before: another process's stamp more than
       :data:`FUTURE_TOLERANCE` in the future (the wall clock stepped back, or that machine's
       clock is ahead) is clamped to now, so it still counts, for one window at most, and a
       shared ``blocked_until`` further ahead than :data:`MAX_PENALTY` cannot be a penalty
       (none is longer) and is dropped.
    3. **Recovery.** After the wall clock steps back by any amount, acquisitions resume within
       one window (plus the penalty in force): nothing waits for the wall clock to catch up.

    Args:
        per_minute: the request budget per sliding minute (the account limit is 50).
        state_dir: the cache directory to share the window through, or ``None``.
        clock: wall-clock seconds, only to share stamps with other processes.
        monotonic: this process's monotonic seconds, for every wait; by default
            ``time.monotonic``, or ``clock`` itself when a fake ``clock`` is injected without
            one (so a test's fake clock drives both).
        sleep: the coroutine used to wait; tests pass a fake that advances the clocks.
    """

    def __init__(
        self,
        per_minute: int = 50,
        *,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_minute < 1:
            msg = f"the rate limit must allow at least 1 request a minute, not {per_minute!r}"
            raise UsageError(msg)
        self.per_minute = per_minute
        self._clock = clock
        if monotonic is None:
            monotonic = time.monotonic if clock is time.time else clock
        self._mono = monotonic
        self._sleep = sleep
        self._dir = state_dir / "ratelimit" if state_dir is not None else None
        self._token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._own: list[float] = []  # this instance's grants, monotonic
        self._own_blocked = 0.0  # this instance's penalty ends then, monotonic
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
            The (monotonic) time recorded for the request; pass it to :meth:`sent` once the
            answer came.
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
        if stamp not in self._own:
            return  # already out of the window
        with self._shared() as others:
            mono = self._mono()
            self._own.remove(stamp)
            self._own.append(max(mono, stamp))
            self._publish(others, mono)

    def penalise(self, retry_after: float) -> None:
        """Make every acquirer, in every process on this state, wait ``retry_after`` seconds.

        The wait is clamped to 0..:data:`MAX_PENALTY`; a shorter penalty never shortens a
        longer one.
        """
        delay = _finite(retry_after) or 0.0
        delay = min(max(delay, 0.0), MAX_PENALTY)
        with self._shared() as others:
            mono = self._mono()
            self._own_blocked = max(self._own_blocked, mono + delay)
            self._publish(others, mono)

    def _try_acquire(self) -> tuple[float, float]:
        """Record a request: ``(0, its time)``, or ``(how long to wait, 0)``."""
        with self._shared() as others:
            mono = self._mono()
            self._own = [m for m in self._own if mono - m < WINDOW]
            ages = [max(mono - m, 0.0) for m in self._own]
            blocked = self._own_blocked - mono
            if others is not None:
                ages += [max(others.wall - t, 0.0) for t, _ in others.stamps]
                if others.blocked_by:
                    blocked = max(blocked, others.blocked_until - others.wall)
            if blocked > 0:
                wait = blocked
            elif len(ages) >= self.per_minute:
                ages.sort(reverse=True)  # oldest first: wait until enough have left the window
                wait = WINDOW - ages[len(ages) - self.per_minute]
            else:
                self._own.append(mono)
                wait = 0.0
            self._publish(others, mono)
            # Guard against a zero wait that would spin on a stamp exactly on the edge.
            return (max(wait, 0.001), 0.0) if wait > 0 else (0.0, mono)

    # -- the shared file ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _shared(self) -> Iterator[_Others | None]:
        """The other instances' state, under the lock; ``None`` without a ``state_dir``."""
        if self._dir is None:
            yield None
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
                yield self._read(self._clock())
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _read(self, wall: float) -> _Others:
        """The other instances' stamps and penalty, clamped against the wall clock ``wall``."""
        assert self._dir is not None
        try:
            raw = json.loads((self._dir / "window.json").read_text(encoding="utf-8"))
            times = list(raw["stamps"])
            owners = raw.get("owners")
            if not isinstance(owners, list) or len(owners) != len(times):
                owners = [""] * len(times)  # written by an older motionflow: nobody's
            blocked_until, blocked_by = raw.get("blocked_until", 0.0), raw.get("blocked_by", "?")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return _Others(wall, [], 0.0, "")  # missing or torn state: start a fresh window
        stamps = []
        for value, owner in zip(times, owners, strict=True):
            stamp = _finite(value)
            if stamp is None or owner == self._token:
                continue  # unreadable, or ours: our monotonic record is the truth about ours
            if stamp > wall + FUTURE_TOLERANCE:
                stamp = wall  # from the future: a clock stepped back; count it, from now
            if wall - stamp < WINDOW:
                stamps.append((stamp, str(owner)))
        until = _finite(blocked_until) or 0.0
        by = str(blocked_by) or "?"
        if until <= wall or by == self._token:
            return _Others(wall, stamps, 0.0, "")
        if until > wall + MAX_PENALTY + FUTURE_TOLERANCE:
            # Longer than any penalty can be: written by a clock that has since stepped back.
            # A real one comes back with the next 429; an hour's stall would not.
            return _Others(wall, stamps, 0.0, "")
        return _Others(wall, stamps, until, by)

    def _publish(self, others: _Others | None, mono: float) -> None:
        """Write the other instances' state back, with this instance's own, in wall time."""
        if others is None or self._dir is None:
            return
        wall = others.wall
        stamps = [*others.stamps, *((wall - (mono - m), self._token) for m in self._own)]
        until, by = others.blocked_until, others.blocked_by
        own_left = self._own_blocked - mono
        if own_left > 0 and wall + own_left > until:
            until, by = wall + own_left, self._token
        data = {
            "stamps": [t for t, _ in stamps],
            "owners": [o for _, o in stamps],
            "blocked_until": until,
            "blocked_by": by,
        }
        path = self._dir / "window.json"
        tmp = path.with_name(f"window.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data), encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            msg = f"cannot write the rate-limit state {str(path)!r}: {exc}; check the cache"
            raise CacheError(msg) from exc
