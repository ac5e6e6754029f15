"""The team's lease in a generation session: single flight of paid submits across machines.

With a team's remote, the key lock's work is done across machines by the key's lease
(:mod:`motionflow.cache.lease`): a key with no local record is claimed on the remote before it
is submitted; a machine that loses the claim follows the winner's job (polls and downloads it
as a resumed job) instead of paying for it again; the job id and the final state go to the
lease as they go to the journal.

:class:`SessionLeases` holds these steps; :class:`~motionflow.providers.session.GenerationSession`
inherits them and calls them from its submit and collect paths. They use only the session's
state declared on the class (its journal, options, events and leases), never its submit
machinery, so this module does not import the session's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from motionflow.errors import CacheError, ProviderError
from motionflow.events import Event, Warning
from motionflow.providers.resume import next_attempt

if TYPE_CHECKING:
    from motionflow.cache.journal import JobRecord, Journal
    from motionflow.cache.lease import Lease, Leases, Ticket
    from motionflow.providers.options import GenerationOptions

__all__ = ["LeaseMovedBeforePost", "SessionLeases"]


class _Spec(Protocol):  # what these steps read of motionflow.providers.session.JobSpec
    @property
    def key(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def recipe(self) -> str: ...
    @property
    def estimated_usd(self) -> float: ...


class LeaseMovedBeforePost(Exception):  # noqa: N818 - a signal inside the session
    """Another machine took the lease over before this one's POST: read it again.

    Raised by :meth:`SessionLeases._lease_submitting`, caught by the session's submit loop;
    never raised out of the session.
    """


class SessionLeases:
    """The lease steps of :class:`~motionflow.providers.session.GenerationSession` (a mixin).

    The steps other than :meth:`_release` and :meth:`_settle_lease` (which do nothing
    without leases) are called only when the session has leases (``_leases`` is not None).
    """

    # set by GenerationSession.__init__
    provider: str
    journal: Journal
    options: GenerationOptions
    emit: Callable[[Event], None]
    _leases: Leases | None

    async def _claim(self, spec: _Spec) -> tuple[Ticket | None, JobRecord | None]:
        """Claim ``spec.key``'s lease: a ticket to submit, or the record of a job to follow.

        Raises:
            ProviderError: the lease is in doubt, failed, lost or damaged, or the remote
                cannot be read or written (nothing is submitted without the lease).
        """
        from motionflow.cache.lease import Blocked, Follow

        assert self._leases is not None
        leases = self._leases
        attempt, idem = next_attempt(self.journal, spec.key)

        def waiting(lease: Lease) -> None:
            self.emit(
                Warning(
                    f"{spec.label}: {lease.holder} is submitting this generation (lease "
                    f"{leases.where(spec.key)}); waiting for its job id to follow that job"
                )
            )

        try:
            outcome = await leases.claim(
                spec.key,
                label=spec.label,
                recipe=spec.recipe,
                estimated_usd=spec.estimated_usd,
                attempt=attempt,
                idempotency_key=idem,
                flags=self.options,
                on_wait=waiting,
            )
        except CacheError as exc:
            raise ProviderError(_no_lease(spec.label, exc)) from exc
        if isinstance(outcome, Blocked):
            if outcome.why == "in_doubt" and outcome.lease is not None:
                self._doubt_from_lease(spec, outcome.lease)
            raise ProviderError(outcome.message)
        if isinstance(outcome, Follow):
            return None, self._follow(spec, outcome.lease)
        return outcome.ticket, None

    def _journal_other(self, spec: _Spec, lease: Lease) -> JobRecord:
        """A journal record here for another machine's submit (its Idempotency-Key, its
        price): ``redownload``, so ``spend`` never counts it as a charge of this machine."""
        return self.journal.begin(
            spec.key,
            label=spec.label,
            recipe=spec.recipe,
            provider=self.provider,
            request={},
            idempotency_key=lease.idempotency_key,
            estimated_usd=lease.estimated_usd,
            stage=spec.stage,
            attempt=lease.attempt,
            redownload=True,  # not submitted here: the holder's machine did (and paid)
        )

    def _doubt_from_lease(self, spec: _Spec, lease: Lease) -> None:
        """Journal another machine's submit in doubt here too, so the user decides here as
        for a local one: ``motionflow jobs`` lists it with the charges of its time, ``jobs
        adopt`` attaches one (the lease then gets that job id), ``--resubmit-in-doubt`` pays."""
        record = self._journal_other(spec, lease)
        # the submit's time, by its holder's clock: `motionflow jobs` looks for charges then
        began = next((when for state, when, *_ in lease.history if state == "submitting"), "")
        record.history[0] = ["submitting", began or lease.updated_at]
        # Journal.begin stamps our clock; the time of the submit is the holder's. (No public
        # way to begin a record at another time: written again, atomically, before use.)
        self.journal._write(record)
        why = (
            f"submitted by {lease.holder} on another machine (lease began {lease.began}), "
            f"which stopped answering with no job id: {lease.error or 'it may have died mid-POST'}"
        )
        self.journal.advance(record, "in_doubt", error=why)

    async def _doubt_resolved_elsewhere(self, record: JobRecord) -> JobRecord | None:
        """A local submit in doubt (or left submitting) whose lease names a job: resolved elsewhere.

        The lease of the same submit (same ``Idempotency-Key``) got its job id from a journal
        (its holder's, or a user's ``jobs adopt`` or ``--resubmit-in-doubt`` there): that job
        is followed, nothing is paid. Otherwise the record stays as it is.
        """
        assert self._leases is not None
        try:
            lease = await asyncio.to_thread(self._leases.read, record.key)
        except CacheError:
            return record  # decided as for a local record: in doubt until the user decides
        if (
            lease is None
            or not lease.job_id
            or lease.state not in {"submitted", "stored"}
            or lease.idempotency_key != record.idempotency_key
        ):
            return record
        self.journal.archive(record, f"resolved through the team's lease: job {lease.job_id}")
        return None

    def _follow(self, spec: _Spec, lease: Lease) -> JobRecord:
        """Journal another machine's job as ours to poll: ``submitted``, never submitted here."""
        from datetime import UTC, datetime

        record = self._journal_other(spec, lease)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        record.history.append([f"following {lease.holder}'s job from the team's remote", now])
        return self.journal.advance(record, "submitted", job_id=lease.job_id)

    async def _lease_submitting(self, spec: _Spec, ticket: Ticket) -> None:
        """Say on the lease that the POST goes out now; only then may it go out.

        Raises:
            LeaseMovedBeforePost: another machine took the lease over: this one must not submit.
            ProviderError: the remote failed: not submitted.
        """
        from motionflow.cache.lease import LeaseMoved

        assert self._leases is not None
        try:
            await self._leases.advance(ticket, "submitting")
        except LeaseMoved as exc:
            raise LeaseMovedBeforePost(str(exc)) from exc
        except CacheError as exc:
            await self._release(ticket, "the remote failed before the submit", nothing_sent=True)
            raise ProviderError(_no_lease(spec.label, exc)) from exc

    async def _lease_write(self, ticket: Ticket, state: str, **changes: Any) -> None:
        """Tell other machines what became of this machine's submit (a few tries)."""
        assert self._leases is not None
        problem: Exception | None = None
        for pause in (0.0, 1.0, 3.0):
            await asyncio.sleep(pause)
            try:
                await self._leases.advance(ticket, state, **changes)
            except CacheError as exc:
                problem = exc
                if ticket.moved:
                    break
                continue
            return
        label = ticket.lease.label or ticket.lease.key[:12]
        after = f"{state} (job {changes['job_id']})" if changes.get("job_id") else state
        self.emit(
            Warning(
                f"{label}: the team's lease could not be updated to {after}: {problem}. "
                "Other machines will not follow this job: after the lease's wait they see it "
                "in doubt and do not pay for it again by themselves"
            )
        )

    async def _release(self, ticket: Ticket, why: str, *, nothing_sent: bool = False) -> None:
        if self._leases is not None:
            await self._leases.release(ticket, why, nothing_sent=nothing_sent)

    async def _settle_lease(self, key: str) -> None:
        """Write a finished job's state (stored, failed, lost) to the key's lease."""
        if self._leases is None:
            return
        try:
            record = self.journal.get(key)
            if record is None or not record.job_id:
                return
            if record.state not in {"submitted", "completed", "stored", "failed", "lost"}:
                return
            state = "submitted" if record.state == "completed" else record.state
            error = None if state in {"submitted", "stored"} else record.error
            await self._leases.settle(
                key, record.job_id, state, error, idempotency_key=record.idempotency_key
            )
        except CacheError as exc:
            self.emit(Warning(f"the team's lease of {key[:12]}… could not be updated: {exc}"))


def _no_lease(label: str, exc: Exception) -> str:
    return (
        f"{label}: not submitted, nothing was charged: the team's lease on this generation "
        f"could not be taken ({exc}). Without the lease another machine could pay for the "
        "same generation, so nothing is submitted: fix the remote and run again, or run with "
        "--no-remote to work alone"
    )
