"""The journal of paid jobs: a durable record per key, written before and after every submit.

States and the only transitions allowed (docs/api.md, "Never paying twice")::

    submitting ──> submitted ──> completed ──> stored
         │             │             │
         ├──> in_doubt  ├──> failed   └──> lost (404s, and the retention hour certainly passed)
         │      │       └──> lost     (the same proof, for a job never seen completed)
         │      ├──> submitted (the user adopted a job id: ``motionflow jobs adopt --job``)
         │      └──> completed (the user adopted a usage charge: ``jobs adopt --event``)
         └──> failed (the service refused the request: nothing was charged)

Nothing moves a record out of ``in_doubt`` by itself: the usage API has no job id, other
people share the account, clocks differ and billing lags, so only the user adopts a charge or
pays again (``--resubmit-in-doubt``, with the same ``Idempotency-Key``).

A record moved to ``journal/archive/`` (the user paid again, or a stored video is downloaded
again) is history: it is never written again.

``journal/open/<key>`` marks every key whose record is not settled yet (submitting, submitted,
completed, in doubt): listing that folder is how a run with nothing to do of its own learns,
without reading every record, that paid jobs are waiting. A marker is made before its record
is written and removed after, so a crash can leave a marker too many, never one too few.

A record is one JSON file, ``journal/<key>.json``, replaced atomically (temp file, fsync,
rename, fsync of the folder) so a crash, even ``kill -9``, leaves the old record or the new
one, never half of either. ``submitting`` is written before the POST and ``submitted`` (with
the job id) as soon as the response arrives: on restart, a record with a job id is polled
again, never resubmitted.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from motionflow.errors import CacheError

__all__ = ["OPEN", "STATES", "JobRecord", "Journal", "record_problem"]

STATES = ("submitting", "submitted", "completed", "stored", "in_doubt", "failed", "lost")
OPEN = frozenset({"submitting", "submitted", "completed", "in_doubt"})
"""States of a record that waits on the service or on the user."""
_NEXT: dict[str, tuple[str, ...]] = {
    "submitting": ("submitted", "in_doubt", "failed"),
    "submitted": ("completed", "failed", "lost"),
    "completed": ("stored", "lost"),
    "in_doubt": ("submitted", "completed"),
    "stored": (),
    "failed": (),
    "lost": (),
}


_TEXT = ("key", "state", "label", "recipe", "provider", "idempotency_key", "stage")
_OPTIONAL_TEXT = ("job_id", "blob", "error", "alive_at", "adopted_event")
_OPTIONAL_NUMBER = ("actual_usd", "billed_seconds")


def _no_constant(name: str) -> Any:
    msg = f"{name} is not a number JSON allows"
    raise ValueError(msg)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def record_problem(data: Any) -> str | None:
    """Why ``data`` (a parsed journal file) is not a journal record, or None when it is one.

    Every field is checked for its type, so a damaged or hand-edited record is reported where
    it is read, never half-used (a text where an amount belongs would break the sums).
    """
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an object with a job's fields"
    names = {f.name for f in fields(JobRecord)}
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        return f"it has fields a journal record never has: {', '.join(unknown[:5])}"
    required = ("key", "state", "label", "recipe", "provider", "request", "idempotency_key")
    missing = [name for name in (*required, "estimated_usd") if name not in data]
    if missing:
        return f"it lacks the field(s) {', '.join(missing)}"
    wrong = [n for n in _TEXT if n in data and not isinstance(data[n], str)]
    wrong += [n for n in _OPTIONAL_TEXT if data.get(n) is not None and not isinstance(data[n], str)]
    wrong += [n for n in _OPTIONAL_NUMBER if data.get(n) is not None and not _number(data[n])]
    if not _number(data["estimated_usd"]) or data["estimated_usd"] < 0:
        wrong.append("estimated_usd")
    if not isinstance(data["request"], dict):
        wrong.append("request")
    urls = data.get("output_urls", [])
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        wrong.append("output_urls")
    history = data.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in history
    ):
        wrong.append("history")
    attempt = data.get("attempt", 0)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        wrong.append("attempt")
    if not isinstance(data.get("redownload", False), bool):
        wrong.append("redownload")
    if wrong:
        shown = ", ".join(f"{n} ({type(data[n]).__name__} {data[n]!r:.40})" for n in wrong)
        return f"field(s) of the wrong type or value: {shown}"
    if data["state"] not in STATES:
        return f"its state {data['state']!r:.40} is none of {', '.join(STATES)}"
    return None


def _damaged(path: Path, why: str) -> str:
    return (
        f"the journal record {str(path)!r} is damaged: {why}. It may stand for a paid job, so "
        "it is never skipped silently: inspect it (the job id, if any, is on the EmpirioLabs "
        f"dashboard), then move it out of the journal, e.g. `mv '{path}' '{path}.damaged'` "
        "(files not ending in .json are not read), and run the command again"
    )


def _unwritable(folder: Path, exc: OSError) -> CacheError:
    from motionflow.cache.store import cache_write_error

    root = folder.parent if folder.name == "journal" else folder.parent.parent
    problem = cache_write_error(root, exc, f"write the journal in {str(folder)!r}")
    if problem is not None:
        return CacheError(f"{problem}; nothing was submitted")
    msg = f"cannot write the journal in {str(folder)!r}: {exc}; nothing was submitted"
    return CacheError(msg)


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
        stage: the recipe stage the job belongs to.
        billed_seconds: the billable seconds the service reported, when it did.
        attempt: how many times the user deliberately paid again for this key (``--retry-failed``,
            ``--resubmit-lost``); part of the ``Idempotency-Key``, which is otherwise the same
            for every submit of the key (``--resubmit-in-doubt`` reuses it).
        alive_at: when (our clock) the service last answered for the job; a job is lost only
            once its retention has certainly passed since then.
        adopted_event: the usage event the user adopted for an in-doubt submit, if any.
        redownload: the record re-downloads the video of an earlier record's job (no charge).
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
    stage: str = ""
    billed_seconds: float | None = None
    attempt: int = 0
    alive_at: str | None = None
    adopted_event: str | None = None
    redownload: bool = False

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

    def last_archived(self, key: str) -> JobRecord | None:
        """The most recently archived record of ``key``, or None.

        Raises:
            CacheError: that record cannot be read.
        """
        folder = self.folder / "archive"
        paths = sorted(folder.glob(f"{key}.*.json")) if folder.is_dir() else []
        return self._read(paths[-1]) if paths else None

    def open_keys(self) -> set[str]:
        """Keys that may have a record waiting on the service or the user (cheap: no reads).

        Markers of records settled since (a crash between the write and the marker's removal)
        are removed here, so the set shrinks back to the truth.
        """
        folder = self.folder / "open"
        try:
            keys = {entry.name for entry in folder.iterdir()}
        except FileNotFoundError:
            return set()
        except OSError as exc:
            msg = (
                f"cannot list the journal's open jobs in {str(folder)!r}: {exc}; pass --cache "
                "DIR or set MOTIONFLOW_CACHE to a writable folder"
            )
            raise CacheError(msg) from exc
        for key in sorted(keys):
            record = self.get(key)
            if record is None or record.state not in OPEN:
                (folder / key).unlink(missing_ok=True)
                keys.discard(key)
        return keys

    def _mark(self, record: JobRecord, *, open_: bool) -> None:
        marker = self.folder / "open" / record.key
        try:
            if open_:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            else:
                marker.unlink(missing_ok=True)
        except OSError as exc:
            raise _unwritable(self.folder, exc) from exc

    def get(self, key: str) -> JobRecord | None:
        """The record of ``key``, or None when no job was ever started for it.

        Raises:
            CacheError: the record exists but cannot be read (it is never silently ignored:
                it may stand for money already spent).
        """
        path = self._path(key)
        if not path.exists():
            return None
        return self._read(path)

    def all(self, *, archived: bool = False) -> list[JobRecord]:
        """Every current record, oldest first; with ``archived``, replaced ones too.

        Raises:
            CacheError: a record cannot be read.
        """
        paths = sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []
        if archived and (self.folder / "archive").is_dir():
            paths += sorted((self.folder / "archive").glob("*.json"))
        records = [self._read(p) for p in paths]
        return sorted(records, key=lambda r: r.started_at)

    def _read(self, path: Path) -> JobRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
        except (OSError, ValueError, RecursionError) as exc:
            raise CacheError(_damaged(path, f"it cannot be read as JSON ({exc})")) from exc
        problem = record_problem(data)
        if problem is None and not (
            path.name == f"{data['key']}.json" or path.name.startswith(f"{data['key']}.")
        ):
            problem = f"its key {data['key'][:16]!r}… is not the one its file name says"
        if problem is not None:
            raise CacheError(_damaged(path, problem))
        return JobRecord(**data)

    def archive(self, record: JobRecord, reason: str) -> None:
        """Move a finished-with record aside (kept for ``jobs`` and ``spend``), freeing its key.

        Used only when the user asked to pay again (``--retry-failed``, ``--resubmit-in-doubt``,
        ``--resubmit-lost``) or when the usage API proved nothing was charged.
        """
        self._check_current(record)
        record.error = f"{record.error or ''} [{reason}]".strip()
        record.history.append(["archived", _now()])
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self._write(record, self.folder / "archive" / f"{record.key}.{stamp}.json")
        self._path(record.key).unlink(missing_ok=True)
        self._mark(record, open_=False)

    def is_current(self, record: JobRecord) -> bool:
        """True when ``record`` is the key's live record (not archived, not replaced)."""
        if record.history and record.history[-1][0] == "archived":
            return False
        path = self._path(record.key)
        if not path.exists():
            return False
        return self._read(path).started_at == record.started_at

    def _check_current(self, record: JobRecord) -> None:
        if not self.is_current(record):
            msg = (
                f"journal: the record of {record.label or record.key[:12]} started at "
                f"{record.started_at} is archived or was replaced; it is never written again"
            )
            raise CacheError(msg)

    def discard(self, record: JobRecord) -> None:
        """Delete a ``submitting`` record whose POST certainly charged nothing.

        Raises:
            CacheError: the record is past ``submitting`` (it may stand for money spent).
        """
        if record.state != "submitting":
            msg = f"journal: {record.key[:12]}… is {record.state}; only a submit can be forgotten"
            raise CacheError(msg)
        self._path(record.key).unlink(missing_ok=True)
        self._mark(record, open_=False)

    def annotate(self, record: JobRecord, **changes: Any) -> JobRecord:
        """Record facts that are not a transition (the charged amount, billed seconds)."""
        for name in changes:
            if name not in {"actual_usd", "billed_seconds", "error", "alive_at", "output_urls"}:
                msg = f"annotate cannot change {name!r}; use advance for transitions"
                raise TypeError(msg)
        self._check_current(record)
        for name, value in changes.items():
            setattr(record, name, value)
        self._write(record)
        return record

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
        stage: str = "",
        attempt: int = 0,
        redownload: bool = False,
    ) -> JobRecord:
        """Write the ``submitting`` record; call it before the POST, never after.

        Raises:
            CacheError: a record already exists for ``key`` (resume it instead of submitting).
        """
        if self._path(key).exists():
            msg = f"a job was already started for key {key[:12]}…; resume it, do not submit again"
            raise CacheError(msg)
        record = JobRecord(
            key,
            "submitting",
            label,
            recipe,
            provider,
            request,
            idempotency_key,
            estimated_usd,
            stage=stage,
            attempt=attempt,
            redownload=redownload,
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
        self._check_current(record)
        for name, value in changes.items():
            if not hasattr(record, name):
                msg = f"journal records have no field {name!r}"
                raise TypeError(msg)
            setattr(record, name, value)
        record.state = state
        record.history.append([state, _now()])
        self._write(record)
        return record

    def _write(self, record: JobRecord, path: Path | None = None) -> None:
        live = path is None
        if live and record.state in OPEN:
            self._mark(record, open_=True)  # before: a crash leaves a marker too many
        self._store(record, path or self._path(record.key))
        if live and record.state not in OPEN:
            self._mark(record, open_=False)  # after: never one too few

    def _store(self, record: JobRecord, path: Path) -> None:
        folder = path.parent
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as handle:
                json.dump(asdict(record), handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(path)
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)  # the rename itself is durable too
            finally:
                os.close(fd)
        except OSError as exc:
            raise _unwritable(folder, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)
