"""What a key's journal record allows next: carry on with its job, pay again, or stop and ask.

These are the never-pay-twice decisions of docs/api.md, kept apart from the HTTP work so they
read in one place: a record with a job id is polled again, never resubmitted; a submit in doubt,
a failed job and a lost result are paid for again only on the user's explicit flag, and a
resubmission in doubt carries the first try's ``Idempotency-Key``. Every journal write here runs
under the key's lock (the session's caller holds it).
"""

from __future__ import annotations

from collections.abc import Callable

from motionflow.cache.journal import JobRecord, Journal
from motionflow.errors import ProviderError
from motionflow.providers.envelopes import LOST_HINT, RESUBMIT_HINT
from motionflow.providers.options import GenerationOptions

__all__ = ["IN_FLIGHT", "idempotency_key", "in_doubt_message", "next_attempt", "resumable"]

IN_FLIGHT = frozenset({"submitted", "completed"})
"""Journal states of jobs that are paid for and whose video is still to be fetched."""


def idempotency_key(key: str, attempt: int) -> str:
    """The ``Idempotency-Key`` of every submit of cache ``key`` (which includes the take).

    The same for a first submit and a ``--resubmit-in-doubt``, so a service that honours the
    header answers the resubmission with the first job; ``attempt`` grows only when the user
    deliberately pays again for a failed or lost job.
    """
    return f"mf-{key[:40]}-{attempt}"


def next_attempt(journal: Journal, key: str) -> tuple[int, str]:
    """The attempt number and ``Idempotency-Key`` of the next submit of ``key``.

    Read from the key's last archived record, so a crash between archiving it and journaling
    the new submit changes nothing: a submit in doubt is sent again with its own key; a job the
    user paid again for (failed, lost, or a result forgotten) gets the next attempt, so the
    service makes a new video.
    """
    last = journal.last_archived(key)
    if last is None:
        return 0, idempotency_key(key, 0)
    if last.state in {"in_doubt", "submitting"}:
        return last.attempt, last.idempotency_key
    return last.attempt + 1, idempotency_key(key, last.attempt + 1)


def in_doubt_message(label: str, record: JobRecord) -> str:
    """What to tell the user about a submit of ``label`` that may have been charged."""
    return (
        f"{label}: a job may already have been charged (${record.estimated_usd:.2f}) but its id "
        f"is unknown: {record.error}. It stays in doubt until you decide: `motionflow jobs` "
        "lists the account's charges around that time (with their videos); attach one with "
        f"`motionflow jobs adopt {record.key[:12]} --event ID`, or {RESUBMIT_HINT} (sent with "
        "the same Idempotency-Key)"
    )


def resumable(
    journal: Journal,
    record: JobRecord,
    *,
    label: str,
    free: bool,
    options: GenerationOptions,
    has_blob: Callable[[str], bool],
) -> JobRecord | None:
    """The journal record to carry on with, or None to submit a new job.

    Args:
        journal: the cache's journal.
        record: the key's live record.
        label: the instance, for messages.
        free: the provider is the simulator (nothing to lose by submitting again).
        options: the user's flags (``--resubmit-in-doubt``, ``--retry-failed``, ...).
        has_blob: whether the cache still holds a blob.

    Raises:
        ProviderError: the record is failed, in doubt or lost and the user did not ask to
            pay again.
    """
    if record.state == "stored" and not (record.blob and has_blob(record.blob)):
        # The cache lost the video the journal says it stored: download it again (free).
        journal.archive(record, "the cache no longer had the video; downloading again")
        record = _copy_as_completed(journal, record)
    if free and record.state in IN_FLIGHT:
        # A simulated job lives in the simulator of the run that made it, gone by now.
        journal.archive(record, "simulated job of an earlier run; simulated again")
        return None
    if record.state == "submitting":
        record = journal.advance(
            record,
            "in_doubt",
            error="motionflow stopped while submitting; the job may have been charged",
        )
    if record.state == "in_doubt":
        if free or options.resubmit_in_doubt:
            why = "simulated" if free else "resubmitted with --resubmit-in-doubt"
            journal.archive(record, f"{why} (same Idempotency-Key)")
            return None
        raise ProviderError(in_doubt_message(label, record))
    if record.state == "failed":
        if options.retry_failed or free:
            journal.archive(record, "retried with --retry-failed")
            return None
        msg = (
            f"{label}: EmpirioLabs job {record.job_id} failed: {record.error}. It is not "
            "submitted again by itself; run with --retry-failed to submit it again (it is "
            f"charged again, about ${record.estimated_usd:.2f})"
        )
        raise ProviderError(msg)
    if record.state == "lost":
        if options.resubmit_lost or free:
            journal.archive(record, "resubmitted after the result was lost")
            return None
        msg = f"{label}: the result of job {record.job_id} is lost ({record.error}); " + LOST_HINT
        raise ProviderError(msg)
    return record


def _copy_as_completed(journal: Journal, record: JobRecord) -> JobRecord:
    """A fresh record of ``record``'s job, completed, so its video is downloaded again."""
    fresh = journal.begin(
        record.key,
        label=record.label,
        recipe=record.recipe,
        provider=record.provider,
        request=record.request,
        idempotency_key=record.idempotency_key,
        estimated_usd=0.0,
        stage=record.stage,
        attempt=record.attempt,
        redownload=True,
    )
    fresh = journal.advance(fresh, "submitted", job_id=record.job_id)
    return journal.advance(fresh, "completed", output_urls=record.output_urls, actual_usd=None)
