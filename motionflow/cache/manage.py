"""The cache's inventory: which results it holds, what they cost, what refers to them, sizes.

The rules (docs/cache.md): a result is **paid** when its record names a job (``meta.job_id``)
or comes from ``kling.motion_control``; it is **referenced** when its key appears in an
``out/*/manifest.json`` of a scanned project (read by :mod:`motionflow.engine.references`,
which knows the manifest) or in ``<cache>/roots.json`` (:func:`pinned_keys`).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from motionflow.cache.store import Cache
from motionflow.errors import CacheError, UsageError
from motionflow.money import finite_usd

__all__ = [
    "HEX64",
    "Entry",
    "Usage",
    "disk_usage",
    "is_paid",
    "iter_records",
    "list_entries",
    "open_index",
    "pinned_keys",
    "raw_record",
    "record_digests",
    "resolve_keys",
]


_PAID_KINDS = frozenset({"kling.motion_control"})
#: A result key, or the hex of a file's blake3 digest.
HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
#: Orphan blobs younger than this may belong to a run that has not written its record yet.
_GRACE_SECONDS = 3600.0


# -- records ------------------------------------------------------------------------------------
def is_paid(record: dict[str, Any]) -> bool:
    """True when the record stands for a generation job (money, even if simulated)."""
    meta = record.get("meta") or {}
    return bool(meta.get("job_id")) or record.get("stage_kind") in _PAID_KINDS


def _usd(record: dict[str, Any]) -> float:
    """What a result cost: $0 when simulated; a value that is not dollars is refused."""
    meta = record.get("meta") or {}
    if meta.get("simulated") is True or meta.get("provider") == "simulate":
        return 0.0
    value = meta.get("estimated_usd")
    if value is None:
        return 0.0
    what = f"the cache record of job {meta.get('job_id') or '?'} ({record.get('stage_kind')})"
    return finite_usd(
        value, f"{what}: estimated_usd", "Remove it with `motionflow cache forget KEY`"
    )


def record_digests(record: dict[str, Any]) -> list[str]:
    """The digests (``blake3:<hex>``) of the files a result record's outputs name."""
    outputs = record.get("outputs") or {}
    return [o["file"] for o in outputs.values() if isinstance(o, dict) and "file" in o]


def open_index(cache: Cache, *, create: bool = False) -> Any:
    """The cache's index (a ``diskcache.Cache``), or None when there is none and not ``create``."""
    return cache._open(create=create)  # same package: the store's own handle


def iter_records(cache: Cache) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(key, record)`` of every readable result record in the cache, unchecked."""
    index = open_index(cache)
    if index is None:
        return
    for name in list(index.iterkeys()):
        if not isinstance(name, str) or not name.startswith("result:"):
            continue
        raw = index.get(name)
        try:
            record = json.loads(raw) if raw is not None else None
        except ValueError:
            record = None
        if isinstance(record, dict):
            yield name.removeprefix("result:"), record


def raw_record(cache: Cache, key: str) -> dict[str, Any] | None:
    """The stored record of ``key`` as it is (its files not checked), or None."""
    record = cache._read("result:" + key)
    return record if isinstance(record, dict) else None


def _blob_size(cache: Cache, digest: str) -> int | None:
    try:
        return cache.blob_path(digest).stat().st_size
    except OSError:
        return None


def _age(created_at: str, now: float) -> float:
    try:
        return max(0.0, now - datetime.fromisoformat(created_at).timestamp())
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Entry:
    """One result in the cache, as ``motionflow cache ls`` shows it.

    Attributes:
        key: the instance key.
        stage_kind: the stage kind that made it.
        size: bytes of its stored files (shared blobs counted for each result).
        created_at: when it was stored (ISO 8601).
        age_seconds: how long ago.
        estimated_usd: what it cost at the provider's price (0 for free stages).
        paid: it stands for a generation job.
        provider: the generation provider, if any.
        job_id: the job's id, if any.
        files: digests of its stored files.
        missing: digests of its files that are not in ``blobs/`` (gone or quarantined).
        corrupt: ``verify`` found its file corrupt and quarantined it.
        referenced: a scanned manifest or roots.json names it.
    """

    key: str
    stage_kind: str
    size: int
    created_at: str
    age_seconds: float
    estimated_usd: float
    paid: bool
    provider: str
    job_id: str | None
    files: tuple[str, ...]
    missing: tuple[str, ...]
    corrupt: bool
    referenced: bool

    @property
    def state(self) -> str:
        """``ok``, ``corrupt`` (quarantined) or ``missing`` (a file is gone)."""
        if self.corrupt:
            return "corrupt"
        return "missing" if self.missing else "ok"

    def to_json(self) -> dict[str, Any]:
        """The machine-readable entry."""
        data = asdict(self)
        return {
            **data,
            "files": list(self.files),
            "missing": list(self.missing),
            "state": self.state,
        }


def list_entries(cache: Cache, referenced: set[str] | None = None) -> list[Entry]:
    """Every result in the cache, newest first."""
    now = time.time()
    refs = referenced or set()
    entries: list[Entry] = []
    for key, record in iter_records(cache):
        size, missing = 0, []
        for digest in record_digests(record):
            blob = _blob_size(cache, digest)
            if blob is None:
                missing.append(digest)
            else:
                size += blob
        meta = record.get("meta") or {}
        created = str(record.get("created_at") or "")
        entries.append(
            Entry(
                key=key,
                stage_kind=str(record.get("stage_kind", "?")),
                size=size,
                created_at=created,
                age_seconds=_age(created, now),
                estimated_usd=_usd(record),
                paid=is_paid(record),
                provider=str(meta.get("provider") or ""),
                job_id=meta.get("job_id"),
                files=tuple(record_digests(record)),
                missing=tuple(missing),
                corrupt=cache.get("corrupt:" + key) is not None,
                referenced=key in refs,
            )
        )
    return sorted(entries, key=lambda e: e.created_at, reverse=True)


# -- what is referenced --------------------------------------------------------------------------
def pinned_keys(cache: Cache) -> set[str]:
    """Keys listed in ``<cache>/roots.json`` (results gc must keep whatever projects say).

    Raises:
        CacheError: the file exists but cannot be read as JSON.
    """
    keys: set[str] = set()
    roots = cache.root / "roots.json"
    if roots.is_file():
        try:
            listed = json.loads(roots.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = (
                f"cannot read {str(roots)!r} ({exc}); it lists results gc must keep. Fix the "
                'file (a JSON list of keys, or {"keys": [...]}) or move it aside'
            )
            raise CacheError(msg) from exc
        if isinstance(listed, dict):
            listed = listed.get("keys", [])
        if isinstance(listed, list):
            keys.update(k for k in listed if isinstance(k, str))
    return keys


def resolve_keys(cache: Cache, wanted: Iterable[str]) -> list[str]:
    """Full keys for ``wanted`` keys or unique prefixes (at least 8 characters).

    Raises:
        UsageError: a key is unknown, too short or ambiguous.
    """
    known = [key for key, _ in iter_records(cache)]
    found: list[str] = []
    for text in wanted:
        prefix = text.strip().lower()
        matches = [k for k in known if k.startswith(prefix)] if len(prefix) >= 8 else []
        if len(matches) != 1:
            why = (
                "is shorter than 8 characters"
                if len(prefix) < 8
                else "matches no result"
                if not matches
                else f"matches {len(matches)} results"
            )
            msg = f"key {text!r} {why} in {str(cache.root)!r}; `motionflow cache ls` lists the keys"
            raise UsageError(msg)
        if matches[0] not in found:
            found.append(matches[0])
    return found


# -- du ------------------------------------------------------------------------------------------
def _tree_size(folder: Path) -> tuple[int, int]:
    files = size = 0
    if folder.is_dir():
        for path in folder.rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file():
                    files += 1
                    size += path.stat().st_size
    return files, size


@dataclass
class Usage:
    """Disk use of a cache directory, by part.

    Attributes:
        root: the cache directory.
        results: result records; ``paid_results`` of them stand for jobs.
        blobs: stored files and their bytes (each counted once).
        paid_bytes: bytes of blobs used by paid results.
        intermediate_bytes: bytes of blobs used only by free results.
        orphan_bytes: bytes of blobs no result uses (fetched inputs, leftovers).
        paid_usd: what the paid results cost at the provider's price.
        folders: ``{name: [files, bytes]}`` for index, journal, quarantine, tmp, ...
    """

    root: str
    results: int = 0
    paid_results: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    paid_bytes: int = 0
    intermediate_bytes: int = 0
    orphan_bytes: int = 0
    paid_usd: float = 0.0
    folders: dict[str, list[int]] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        """Everything under the cache directory."""
        return sum(size for _, size in self.folders.values())

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary."""
        return {
            **asdict(self),
            "paid_usd": round(self.paid_usd, 2),
            "total_bytes": self.total_bytes,
        }


def _all_blobs(cache: Cache) -> dict[str, Path]:
    blobs: dict[str, Path] = {}
    folder = cache.root / "blobs"
    if folder.is_dir():
        for path in folder.glob("*/*"):
            digest = path.parent.name + path.name
            if HEX64.fullmatch(digest) and path.is_file():
                blobs["blake3:" + digest] = path
    return blobs


def disk_usage(cache: Cache) -> Usage:
    """How much room each part of the cache takes."""
    usage = Usage(str(cache.root))
    paid: set[str] = set()
    free: set[str] = set()
    for _, record in iter_records(cache):
        usage.results += 1
        if is_paid(record):
            usage.paid_results += 1
            usage.paid_usd += _usd(record)
            paid.update(record_digests(record))
        else:
            free.update(record_digests(record))
    for digest, path in _all_blobs(cache).items():
        size = path.stat().st_size
        usage.blobs += 1
        usage.blob_bytes += size
        if digest in paid:
            usage.paid_bytes += size
        elif digest in free:
            usage.intermediate_bytes += size
        else:
            usage.orphan_bytes += size
    if cache.root.is_dir():
        for sub in sorted(cache.root.iterdir()):
            if sub.is_dir():
                usage.folders[sub.name] = list(_tree_size(sub))
    return usage
