"""Submitting one paid job: the journal protocol around the POST.

Steps 1 and 3 of docs/api.md's never-pay-twice rule (:mod:`motionflow.providers.session` lists
them): the ``submitting`` record is written before the POST and the job id right after it,
with the key's one ``Idempotency-Key``; an ambiguous answer leaves the record ``in_doubt``. With
a team's remote, the lease says ``submitting`` before the POST and the job id after it
(:mod:`motionflow.providers.session_leases`).

:class:`SessionSubmits` holds these steps;
:class:`~motionflow.providers.session.GenerationSession` inherits them and calls
:meth:`~SessionSubmits._submit_leased` for a key it may submit.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from motionflow.artifacts import FileArtifact
from motionflow.cache.journal import JobRecord
from motionflow.errors import CacheError, ProviderError, UsageError
from motionflow.events import JobSubmitted
from motionflow.providers.empiriolabs import (
    AuthError,
    EmpirioLabsClient,
    InsufficientCredits,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    ServiceUnreachable,
    SubmitInDoubt,
    SubmitRequest,
)
from motionflow.providers.resume import in_doubt_message, next_attempt
from motionflow.providers.session_leases import LeaseMovedBeforePost, SessionLeases

if TYPE_CHECKING:
    from motionflow.cache.lease import Ticket
    from motionflow.publish.base import PublishedUrls

__all__ = ["MODEL_ID", "JobSpec", "SessionSubmits"]

MODEL_ID = "kling-v3-motion-control"


@dataclass(frozen=True)
class JobSpec:
    """What one generation asks for, and who asks (for the journal and messages)."""

    key: str
    stage: str
    label: str
    recipe: str
    image: FileArtifact
    video: FileArtifact
    prompt: str
    mode: str
    character_orientation: str
    duration: float
    keep_original_sound: bool
    estimated_usd: float


class SessionSubmits(SessionLeases):
    """The submit steps of :class:`~motionflow.providers.session.GenerationSession` (a mixin)."""

    # set by GenerationSession.__init__
    free: bool
    _urls: PublishedUrls | None
    _submit_lock: asyncio.Lock
    stopped: str | None
    _stop_error: type[ProviderError]
    submitted: list[JobRecord]
    in_doubt: list[JobRecord]

    if TYPE_CHECKING:  # GenerationSession's progress events

        def _update(
            self, stage: str, label: str, key: str, state: str, job_id: str, usd: float
        ) -> None: ...

    async def _submit_leased(
        self, client: EmpirioLabsClient, spec: JobSpec, ticket: Ticket | None
    ) -> JobRecord:
        """:meth:`_submit`; when the lease moved before the POST, read it again and obey it."""
        while True:
            try:
                return await self._submit(client, spec, ticket)
            except LeaseMovedBeforePost:
                ticket, record = await self._claim(spec)
                if record is not None:
                    return record

    async def _publish(self, spec: JobSpec) -> tuple[str, str]:
        if self._urls is None:
            msg = f"{spec.label}: no publisher is configured for this session"
            raise UsageError(msg)
        image, video = await asyncio.gather(self._urls.url(spec.image), self._urls.url(spec.video))
        return image, video

    async def _submit(
        self, client: EmpirioLabsClient, spec: JobSpec, ticket: Ticket | None = None
    ) -> JobRecord:
        if self.stopped is not None:
            if ticket is not None:
                await self._release(ticket, "the run stopped submitting before this one")
            msg = f"{spec.label}: not submitted: {self.stopped}"
            raise self._stop_error(msg)
        if ticket is None:
            return await self._publish_and_post(client, spec)
        assert self._leases is not None
        async with self._leases.heartbeat(ticket):  # a live holder never looks stale
            try:
                return await self._publish_and_post(client, spec, ticket)
            except BaseException as exc:
                # only a lease still ``claimed`` is freed: nothing was sent for it
                await self._release(ticket, f"stopped before submitting: {exc!r:.200}")
                raise

    async def _publish_and_post(
        self, client: EmpirioLabsClient, spec: JobSpec, ticket: Ticket | None = None
    ) -> JobRecord:
        usd = 0.0 if self.free else spec.estimated_usd
        self._update(spec.stage, spec.label, spec.key, "submitting", "", usd)
        image, video = await self._publish(spec)
        body = SubmitRequest(
            model=MODEL_ID,
            prompt=spec.prompt,
            reference_image=image,
            reference_video=video,
            character_orientation=spec.character_orientation,
            mode=spec.mode,
            duration=spec.duration,
            keep_original_sound=spec.keep_original_sound,
        )
        attempt, idem = next_attempt(self.journal, spec.key)
        if ticket is not None:  # the lease's attempt and key (a takeover in doubt keeps them)
            attempt, idem = ticket.attempt, ticket.idempotency_key
        async with self._submit_lock:  # one at a time: a 401 or 402 stops the ones behind it
            if ticket is None:
                return await self._post(client, spec, body, attempt, idem)
            await self._lease_submitting(spec, ticket)
            return await self._post(client, spec, body, attempt, idem, ticket)

    async def _post(
        self,
        client: EmpirioLabsClient,
        spec: JobSpec,
        body: SubmitRequest,
        attempt: int,
        idem: str,
        ticket: Ticket | None = None,
    ) -> JobRecord:
        if self.stopped is not None:
            if ticket is not None:  # ``submitting`` was written, but no POST was sent
                reason = "the run stopped submitting before this one"
                await self._release(ticket, reason, nothing_sent=True)
            msg = f"{spec.label}: not submitted: {self.stopped}"
            raise self._stop_error(msg)
        try:
            record = self.journal.begin(
                spec.key,
                label=spec.label,
                recipe=spec.recipe,
                provider=self.provider,
                request=body.to_json(),
                idempotency_key=idem,
                estimated_usd=spec.estimated_usd,
                stage=spec.stage,
                attempt=attempt,
            )
        except CacheError:
            if ticket is not None:  # nothing was sent: free the lease
                await self._release(ticket, "the journal could not be written", nothing_sent=True)
            raise
        try:
            submitted = await client.submit(body, idempotency_key=idem)
        except SubmitInDoubt as exc:
            record = self.journal.advance(record, "in_doubt", error=str(exc))
            self.in_doubt.append(record)
            if ticket is not None:
                await self._lease_write(ticket, "in_doubt", error=str(exc))
            if self.free:  # the simulator has nothing to lose: try once more, now
                self.journal.archive(record, "simulated: nothing to lose by submitting again")
                return await self._post(client, spec, body, attempt, idem)
            raise ProviderError(in_doubt_message(spec.label, record)) from exc
        except RequestRejected as exc:
            self.journal.advance(record, "failed", error=str(exc))
            if ticket is not None:
                await self._lease_write(ticket, "failed", error=str(exc))
            msg = f"{spec.label}: EmpirioLabs refused the request (nothing was charged): {exc}"
            raise ProviderError(msg) from exc
        except ServiceUnreachable as exc:
            self.journal.discard(record)  # no connection was made: nothing reached the service
            if ticket is not None:
                await self._release(ticket, f"not submitted: {exc}", nothing_sent=True)
            self.stopped = f"{exc} (no further jobs are submitted in this run)"
            self._stop_error = ServiceUnreachable
            raise ServiceUnreachable(f"{spec.label}: not submitted: {exc}") from exc
        except (AuthError, InsufficientCredits, ModelNotFound) as exc:
            self.journal.discard(record)  # the POST certainly charged nothing
            if ticket is not None:
                await self._release(ticket, f"not submitted: {exc}", nothing_sent=True)
            self.stopped = f"{exc} (no further jobs are submitted in this run)"
            msg = f"{spec.label}: not submitted, nothing was charged: {exc}"
            raise ProviderError(msg) from exc
        except (RateLimited, ProviderError) as exc:
            self.journal.discard(record)
            if ticket is not None:
                await self._release(ticket, f"not submitted: {exc}", nothing_sent=True)
            msg = f"{spec.label}: not submitted, nothing was charged: {exc}"
            raise ProviderError(msg) from exc
        # Cancelled (Ctrl-C) or a bug mid-POST: the record stays ``submitting``; the next
        # run treats it as in doubt.
        record = self.journal.advance(record, "submitted", job_id=submitted.job_id)
        self.submitted.append(record)
        if ticket is not None:  # other machines follow this job from now on
            await self._lease_write(ticket, "submitted", job_id=submitted.job_id)
        self.emit(
            JobSubmitted(
                spec.stage, spec.label, self.provider, record.job_id or "", spec.estimated_usd
            )
        )
        return record
