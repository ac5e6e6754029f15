"""The journal of paid jobs: a durable record per key, written before and after every submit.

States and the only transitions allowed (API_CONTRACT.md, "the never-pay-twice rule")::

    submitting ──> submitted ──> completed ──> stored
         │             │             │
         ├──> in_doubt  ├──> failed   └──> lost (the URL expired before the download)
         │      │       └──> lost     (404 after the retention hour)
         │      └──> submitted (a matching usage event was found) / failed
         └──> failed (the service refused the request: nothing was charged)

A record is one JSON file, ``journal/<key>.json``, replaced atomically (temp file, fsync,
rename, fsync of the folder) so a crash, even ``kill -9``, leaves the old record or the new
one, never half of either. ``submitting`` is written before the POST and ``submitted`` (with
the job id) as soon as the response arrives: on restart, a record with a job id is polled
again, never resubmitted.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from motionflow.errors import CacheError

__all__ = ["STATES", "JobRecord", "Journal"]

STATES = ("submitting", "submitted", "completed", "stored", "in_doubt", "failed", "lost")
_NEXT: dict[str, tuple[str, ...]] = {
    "submitting": ("submitted", "in_doubt", "failed"),
    "submitted": ("completed", "failed", "lost"),
    "completed": ("stored", "lost"),
    "in_doubt": ("submitted", "failed"),
    "stored": (),
    "failed": (),
    "lost": (),
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class JobRecord:
    """What the journal knows about the paid job of one cache key.

    Attributes:
        key: the stage instance's cache key.
        state: one of :data:`STATES`.
        label: the instance's label (``take[red-jacket]``), for ``motionflow jobs``.
        recipe: the recipe's name.
        provider: the provider's identity.
        request: the submit body (public URLs and settings; never the API key).
        idempotency_key: sent with the POST; the same on any resubmission.
        estimated_usd: the price reserved for the job.
        job_id: the service's id, once known.
        output_urls: the result URLs, once completed.
        blob: the digest of the stored video, once downloaded.
        actual_usd: ``cost.amount`` from the usage API, when it could be read.
        error: the service's (or our) message for failed, lost and in-doubt jobs.
        history: ``[state, time]`` for every transition, oldest first.
    """

    key: str
    state: str
    label: str
    recipe: str
    provider: str
    request: dict[str, Any]
    idempotency_key: str
    estimated_usd: float
    job_id: str | None = None
    output_urls: list[str] = field(default_factory=list)
    blob: str | None = None
    actual_usd: float | None = None
    error: str | None = None
    history: list[list[str]] = field(default_factory=list)

    @property
    def started_at(self) -> str:
        """When the record was first written (just before the submit)."""
        return self.history[0][1] if self.history else ""

    @property
    def updated_at(self) -> str:
        """When the record last changed."""
        return self.history[-1][1] if self.history else ""


class Journal:
    """The records of paid jobs under ``<cache>/journal/``."""

    def __init__(self, cache_root: Path) -> None:
        self.folder = cache_root / "journal"

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> JobRecord | None:
        """The record of ``key``, or None when no job was ever started for it.

        Raises:
            CacheError: the record exists but cannot be read (it is never silently ignored:
                it may stand for money already spent).
        """
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return JobRecord(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            msg = (
                f"the journal record {str(path)!r} cannot be read ({exc}); it may stand for a "
                "paid job. Inspect it, and move it aside only if you know the job's fate"
            )
            raise CacheError(msg) from exc

    def all(self) -> list[JobRecord]:
        """Every record, oldest first."""
        if not self.folder.is_dir():
            return []
        records = [self.get(p.stem) for p in self.folder.glob("*.json")]
        return sorted((r for r in records if r is not None), key=lambda r: r.started_at)

    def begin(
        self,
        key: str,
        *,
        label: str,
        recipe: str,
        provider: str,
        request: dict[str, Any],
        idempotency_key: str,
        estimated_usd: float,
    ) -> JobRecord:
        """Write the ``submitting`` record; call it before the POST, never after.

        Raises:
            CacheError: a record already exists for ``key`` (resume it instead of submitting).
        """
        if self._path(key).exists():
            msg = f"a job was already started for key {key[:12]}…; resume it, do not submit again"
            raise CacheError(msg)
        record = JobRecord(
            key, "submitting", label, recipe, provider, request, idempotency_key, estimated_usd
        )
        record.history.append(["submitting", _now()])
        self._write(record)
        return record

    def advance(self, record: JobRecord, state: str, **changes: Any) -> JobRecord:
        """Move ``record`` to ``state`` with ``changes`` and write it durably.

        Raises:
            CacheError: the transition is not allowed (a bug that could pay twice).
        """
        if state not in _NEXT.get(record.state, ()):
            msg = f"journal: {record.key[:12]}… cannot go from {record.state} to {state}"
            raise CacheError(msg)
        for name, value in changes.items():
            if not hasattr(record, name):
                msg = f"journal records have no field {name!r}"
                raise TypeError(msg)
            setattr(record, name, value)
        record.state = state
        record.history.append([state, _now()])
        self._write(record)
        return record

    def _write(self, record: JobRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(record.key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                json.dump(asdict(record), handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(fd)  # the rename itself is durable too
            finally:
                os.close(fd)
        except OSError as exc:
            msg = f"cannot write the journal in {str(self.folder)!r}: {exc}; nothing was submitted"
            raise CacheError(msg) from exc
        finally:
            tmp.unlink(missing_ok=True)
