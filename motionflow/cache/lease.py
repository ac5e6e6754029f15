"""Leases on paid submits: single flight across the machines that share one remote store.

Two machines running the same paid sweep each have their own cache and journal; the journal's
key lock (``motionflow.cache.locks``) only works on one machine. Before a paid submit, the
session claims the generation's key on the team's remote with a conditional create
(``If-None-Match: *``) of ``v1/leases/<key>.json``; only one machine can create it, so only one
submits. Every later write replaces only the version its writer read (``If-Match: <etag>``).

This module makes those reads and writes (:class:`Leases`). The record, its states, the
takeover rules and the decision on a lease read (:func:`decide`) live in
:mod:`motionflow.cache.lease_record`, whose names are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from motionflow.cache.lease_record import (
    FORMAT,
    LEASE_STATES,
    NEXT,
    RANK,
    Blocked,
    Flags,
    Follow,
    Lease,
    LeaseMoved,
    Outcome,
    Ticket,
    Won,
    blocked,
    damaged,
    decide,
    lease_name,
)
from motionflow.cache.objects import Conflict, ObjectInfo, RemoteError
from motionflow.errors import CacheError

__all__ = [
    "FORMAT",
    "LEASE_STATES",
    "LEASE_WAIT_ENV",
    "NEXT",
    "RANK",
    "Blocked",
    "Follow",
    "Lease",
    "LeaseMoved",
    "Leases",
    "Ticket",
    "Won",
    "decide",
    "lease_name",
]

LEASE_WAIT_ENV = "MOTIONFLOW_LEASE_WAIT"
"""Seconds a lease without a job id may stay unchanged before it counts as stale (default 60)."""
DEFAULT_WAIT = 60.0
MAX_BYTES = 64 * 1024


class _Store(Protocol):  # what Leases needs of motionflow.cache.objects.ObjectStore
    def get(self, name: str, *, max_bytes: int) -> tuple[bytes, ObjectInfo] | None: ...
    def put(
        self, name: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str: ...
    def server_now(self) -> datetime: ...
    def where(self) -> str: ...


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class _Wait:
    lease: Lease


@dataclass(frozen=True)
class _Again:  # a conditional write lost: read the lease again
    pass


class Leases:
    """The leases of a team's remote store; one per command, shared by its sessions.

    Args:
        store: the team's remote (:class:`~motionflow.cache.objects.ObjectStore`).
        holder: who this process is (``motionflow.engine.team.holder_id``).
        wait_seconds: how long a lease without a job id may stay unchanged before it is
            stale; None: ``MOTIONFLOW_LEASE_WAIT`` or 60.
        poll_seconds: how often a waiting machine reads the lease again.
        clock: this machine's clock, only for the human-readable times in the lease.
        sleep: waits (tests pass a fake).
    """

    def __init__(
        self,
        store: _Store,
        *,
        holder: str,
        wait_seconds: float | None = None,
        poll_seconds: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        if wait_seconds is None:
            wait_seconds = _wait_from_env()
        self.store = store
        self.holder = holder
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"Leases({self.store.where()!r}, holder={self.holder!r})"

    def where(self, key: str) -> str:
        """The lease's object, for messages."""
        return f"{lease_name(key)} on {self.store.where()}"

    # -- the synchronous core (one store request each; run in threads) ----------------------
    def read(self, key: str) -> Lease | None:
        """The key's lease as stored now, with its etag and age (store's clock), or None.

        Raises:
            CacheError: the lease is damaged; RemoteError: the store failed.
        """
        found = self.store.get(lease_name(key), max_bytes=MAX_BYTES)
        if found is None:
            return None
        raw, info = found
        lease = Lease.parse(raw, where=self.where(key))
        if lease.key != key:
            raise CacheError(damaged(self.where(key), "it names another key"))
        lease.etag = info.etag
        lease.age = max(0.0, (self.store.server_now() - info.modified).total_seconds())
        return lease

    def _now(self) -> str:
        return _stamp(self._clock())

    def _fresh(
        self, key: str, *, label: str, recipe: str, usd: float, attempt: int, idem: str
    ) -> Lease:
        now = self._now()
        return Lease(
            key,
            self.holder,
            "claimed",
            idem,
            usd,
            label,
            recipe,
            now,
            now,
            attempt=attempt,
            history=[["claimed", now, self.holder]],
        )

    def act(
        self,
        key: str,
        seen: Lease | None,
        *,
        label: str,
        recipe: str,
        estimated_usd: float,
        attempt: int,
        idempotency_key: str,
        flags: Flags,
    ) -> Outcome | _Wait | _Again:
        """Decide on ``seen`` (what :meth:`read` returned) and make the one write it needs.

        ``attempt``/``idempotency_key`` are what this machine's journal would use for a first
        submit; a takeover keeps the lease's key when the first POST may have landed, and
        takes the next attempt after a failed or lost job.

        Raises:
            RemoteError: the store failed.
        """
        if seen is not None and seen.holder == self.holder and seen.state == "claimed":
            # ours (a create retried after a lost answer): this process sends nothing without
            # writing ``submitting`` first, and the key's local lock keeps its runs apart
            return Won(Ticket(seen))
        decision = decide(seen, wait_seconds=self.wait_seconds, flags=flags)
        if decision == "follow":
            assert seen is not None
            return Follow(seen)
        if decision == "wait":
            assert seen is not None
            return _Wait(seen)
        if decision in {"in_doubt", "failed", "lost"}:
            assert seen is not None
            return blocked(decision, seen, self.where(key))
        if seen is None:
            lease = self._fresh(
                key,
                label=label,
                recipe=recipe,
                usd=estimated_usd,
                attempt=attempt,
                idem=idempotency_key,
            )
            try:
                lease.etag = self.store.put(lease_name(key), lease.to_bytes(), if_none_match=True)
            except Conflict:
                return _Again()
            return Won(Ticket(lease))
        if seen.state in {"failed", "lost"}:  # the user pays again: a new attempt
            attempt = max(attempt, seen.attempt + 1)
            idempotency_key = _next_key(seen.idempotency_key, seen.attempt, attempt)
        else:  # nothing was sent, or maybe it was: the same Idempotency-Key either way
            attempt, idempotency_key = seen.attempt, seen.idempotency_key
        lease = self._fresh(
            key,
            label=label,
            recipe=recipe,
            usd=estimated_usd,
            attempt=attempt,
            idem=idempotency_key,
        )
        lease.epoch = seen.epoch + 1
        now = lease.created_at
        lease.history = [
            *seen.history[-20:],
            [f"taken over from {seen.holder} ({seen.state})", now, self.holder],
            ["claimed", now, self.holder],
        ]
        try:
            lease.etag = self.store.put(lease_name(key), lease.to_bytes(), if_match=seen.etag)
        except (Conflict, FileNotFoundError):
            return _Again()
        return Won(Ticket(lease, took_over=seen))

    def write(self, ticket: Ticket, state: str, **changes: Any) -> None:
        """Move the lease this machine holds to ``state`` (``If-Match`` on its etag).

        Raises:
            LeaseMoved: another machine changed it (a takeover): this one must not submit.
            CacheError: not a transition the protocol allows (a bug).
            RemoteError: the store failed.
        """
        old = ticket.lease
        if state != old.state and state not in NEXT[old.state]:
            msg = f"lease {old.key[:12]}…: cannot go from {old.state} to {state}"
            raise CacheError(msg)
        if old.job_id and changes.get("job_id", old.job_id) != old.job_id:
            msg = f"lease {old.key[:12]}…: its job id {old.job_id} is never replaced"
            raise CacheError(msg)
        now = self._now()
        history = old.history if state == old.state else [*old.history, [state, now, self.holder]]
        new = replace(old, state=state, updated_at=now, history=history, **changes)
        try:
            new.etag = self.store.put(lease_name(old.key), new.to_bytes(), if_match=old.etag)
        except (Conflict, FileNotFoundError):
            ticket.moved = True
            msg = (
                f"the lease {self.where(old.key)} was changed by another machine (taken over) "
                "while this one held it"
            )
            raise LeaseMoved(msg) from None
        ticket.lease = new

    def settle_sync(
        self,
        key: str,
        job_id: str,
        state: str,
        error: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> bool:
        """Say on the key's lease that its job ``job_id`` is ``state`` (submitted, stored,
        failed, lost); returns whether the lease was changed.

        Anyone who fetched the job may say it, holder or follower, but only on the version
        that names that job, and only forward. A version with no job id gets it only from the
        journal of the submit it stands for (the same ``idempotency_key``), and only once that
        submit is in doubt or stale: its holder died after the answer, or the user adopted it.
        """
        for _ in range(3):
            lease = self.read(key)
            if lease is None:
                return False
            ticket = Ticket(lease)
            if lease.job_id is None:
                orphan = lease.state == "in_doubt" or (
                    lease.state == "submitting" and lease.age >= self.wait_seconds
                )
                if not (orphan and idempotency_key == lease.idempotency_key):
                    return False
                try:
                    self.write(ticket, "submitted", job_id=job_id)
                except LeaseMoved:
                    continue
            if ticket.lease.job_id != job_id:
                return False
            if state == ticket.lease.state or state not in NEXT[ticket.lease.state]:
                return ticket.lease is not lease
            try:
                self.write(ticket, state, error=error)
            except LeaseMoved:
                continue
            return True
        return False

    # -- the asynchronous API the session uses ----------------------------------------------
    async def claim(
        self,
        key: str,
        *,
        label: str,
        recipe: str,
        estimated_usd: float,
        attempt: int,
        idempotency_key: str,
        flags: Flags,
        on_wait: Callable[[Lease], None] | None = None,
    ) -> Outcome:
        """Read the key's lease until this machine may submit, must follow, or must stop.

        Raises:
            CacheError: the store failed (``RemoteError``) or the lease is damaged; nothing
                may be submitted then.
        """
        waited = False
        while True:
            try:
                seen = await asyncio.to_thread(self.read, key)
            except RemoteError:
                raise
            except CacheError as exc:
                return Blocked("damaged", f"{label}: {exc}")
            outcome = await asyncio.to_thread(
                self.act,
                key,
                seen,
                label=label,
                recipe=recipe,
                estimated_usd=estimated_usd,
                attempt=attempt,
                idempotency_key=idempotency_key,
                flags=flags,
            )
            if isinstance(outcome, _Again):
                continue
            if isinstance(outcome, _Wait):
                if on_wait is not None and not waited:
                    on_wait(outcome.lease)
                waited = True
                await self._sleep(self.poll_seconds)
                continue
            return outcome

    async def advance(self, ticket: Ticket, state: str, **changes: Any) -> None:
        """:meth:`write`, off the event loop and one writer at a time per ticket."""
        async with ticket.lock:
            await asyncio.to_thread(self.write, ticket, state, **changes)

    async def release(self, ticket: Ticket, why: str, *, nothing_sent: bool = False) -> None:
        """Best effort: free a lease this machine holds and sent nothing for.

        A ``claimed`` lease is always freed (its POST is sent only after ``submitting`` is
        written); a ``submitting`` one only with ``nothing_sent``, when the POST certainly
        never reached the service (the journal discarded its record): after a POST that may
        have landed, the lease must stay and go stale (in doubt), never be freed.
        """
        allowed = {"claimed", "submitting"} if nothing_sent else {"claimed"}
        with contextlib.suppress(CacheError):
            async with ticket.lock:
                if ticket.lease.state in allowed and not ticket.moved:
                    await asyncio.to_thread(self.write, ticket, "released", error=why)

    async def settle(
        self,
        key: str,
        job_id: str,
        state: str,
        error: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> bool:
        """:meth:`settle_sync` off the event loop."""
        return await asyncio.to_thread(
            functools.partial(
                self.settle_sync, key, job_id, state, error, idempotency_key=idempotency_key
            )
        )

    @contextlib.asynccontextmanager
    async def heartbeat(self, ticket: Ticket) -> AsyncIterator[None]:
        """Keep the lease fresh while its POST is under way, so nobody calls it stale."""
        period = max(0.2, self.wait_seconds / 4)

        async def beat() -> None:
            while True:
                await self._sleep(period)
                async with ticket.lock:
                    if ticket.moved or ticket.lease.state not in {"claimed", "submitting"}:
                        return
                    with contextlib.suppress(RemoteError):  # it ages; others then wait or doubt
                        await asyncio.to_thread(self.write, ticket, ticket.lease.state)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseMoved):
                await task


def _next_key(old_key: str, old_attempt: int, attempt: int) -> str:
    """The ``Idempotency-Key`` of ``attempt``, from the one of ``old_attempt`` (``mf-…-N``)."""
    suffix = f"-{old_attempt}"
    if old_key.endswith(suffix):
        return f"{old_key[: -len(suffix)]}-{attempt}"
    return f"{old_key}-{attempt}"


def _wait_from_env() -> float:
    text = os.environ.get(LEASE_WAIT_ENV, "").strip()
    if not text:
        return DEFAULT_WAIT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400:
        from motionflow.errors import UsageError

        msg = f"{LEASE_WAIT_ENV}={text!r} is not a number of seconds between 0 and 86400"
        raise UsageError(msg)
    return value
