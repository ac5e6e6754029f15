"""Importing another cache's export after checking every member, so a teammate's paid results
are reused without paying again (exporting is :mod:`motionflow.cache.export`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import sqlite3
import tarfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import blake3

from motionflow.cache.archive import KindOf, bad, check_record, importable, member_kind
from motionflow.cache.export import _EXPORT_VERSION, EXPORT_FORMAT, ExportReport, export_results
from motionflow.cache.integrity import utc_now
from motionflow.cache.manage import _CHUNK, _usd, is_paid, open_index, raw_record, record_digests
from motionflow.cache.store import Cache
from motionflow.errors import CacheError, MotionflowError, UsageError
from motionflow.infile import NOT_REGULAR
from motionflow.outfile import atomic_write_text

__all__ = [
    "EXPORT_FORMAT",
    "ExportReport",
    "ImportReport",
    "export_results",
    "import_results",
]

#: Limits on an imported archive (untrusted input).
_MAX_JSON_BYTES = 64 << 20
_MAX_BLOB_BYTES = 16 << 30
_MAX_MEMBERS = 200_000
_MAX_TOTAL_BYTES = 256 << 30


# -- export / import -----------------------------------------------------------------------------
@dataclass
class ImportReport:
    """What ``import`` added.

    Attributes:
        added: results new to this cache.
        restored: results already recorded whose missing or quarantined file came back.
        present: results already in the cache, left untouched.
        conflicts: results recorded here with other files; never overwritten.
        skipped: ``[key, why]`` of valid results not taken: free ones are recomputed locally
            and values are never imported (the trust model in docs/cache.md).
        blobs: files stored.
        paid_usd: the price of the paid results added or restored (what was not paid again).
    """

    source: str
    added: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    skipped: list[list[str]] = field(default_factory=list)
    blobs: int = 0
    paid_usd: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report."""
        return {**asdict(self), "paid_usd": round(self.paid_usd, 2)}


def import_results(cache: Cache, src: Path, kind_of: KindOf) -> ImportReport:
    """Add an export's results to the cache, verifying every file's digest first.

    ``kind_of`` names the stage kinds this installation knows (the caller reads its registry:
    ``motionflow.engine.references.import_results`` does).

    Every member is checked before anything is kept (names, types, sizes, digests, records);
    then the files are stored and the records written in one transaction. An existing record
    is never overwritten; one whose file was lost gets it back.

    Raises:
        UsageError: the archive is missing, unreadable, malformed or tampered with.
    """
    if not src.is_file():
        what = "no export at" if not src.exists() else "cannot import"
        odd = "" if not src.exists() else f": {NOT_REGULAR}"
        msg = f"{what} {str(src)!r}{odd}; pass the .tar.gz written by `motionflow cache export`"
        raise UsageError(msg)
    report = ImportReport(str(src))
    receipts: dict[str, bytes] = {}
    body: Any = None
    declared = _scan(cache, src, kind_of)
    with contextlib.ExitStack() as stack:
        try:
            staging = stack.enter_context(cache.workdir())
        except (OSError, CacheError) as exc:
            raise _cache_problem(cache, src, exc) from exc
        staged: dict[str, Path] = {}
        try:
            with tarfile.open(src, "r:gz") as tar:
                names: set[str] = set()
                for member in tar:
                    kind = member_kind(member.name)
                    if kind == "dir" and member.isdir():
                        continue
                    if declared.get(member.name) != member.size or member.name in names:
                        raise bad(src, f"{member.name!r} changed while it was being imported")
                    names.add(member.name)
                    handle = tar.extractfile(member)
                    if handle is None:  # pragma: no cover - regular files always have data
                        raise bad(src, f"{member.name!r} has no data")
                    if kind == "blob":
                        digest = "blake3:" + PurePosixPath(member.name).name
                        staged[digest] = _stage_blob(
                            cache, src, handle, staging, digest, member.size
                        )
                    else:
                        data = handle.read(member.size + 1)
                        if len(data) != member.size:
                            raise bad(src, f"{member.name!r} is shorter than its header says")
                        if kind == "results":
                            body = json.loads(data)
                        else:
                            receipts[PurePosixPath(member.name).stem] = data
                if set(declared) - names:
                    raise bad(src, "members vanished while it was being imported")
        except MotionflowError:
            raise
        except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, RecursionError) as exc:
            raise bad(src, f"{type(exc).__name__}: {exc}") from exc
        _check_body(src, body)
        sizes = {digest: path.stat().st_size for digest, path in staged.items()}
        for record in body["results"].values():
            for digest in record_digests(record) if isinstance(record, dict) else []:
                if isinstance(digest, str) and digest not in sizes and cache.has_blob(digest):
                    sizes[digest] = cache.blob_path(digest).stat().st_size
        results = {k: check_record(src, k, r, sizes, kind_of) for k, r in body["results"].items()}
        for key, data in receipts.items():
            try:
                receipt = json.loads(data, parse_constant=_no_constant)
            except (ValueError, RecursionError) as exc:
                raise bad(src, f"receipts/{key}.json is not JSON ({exc})") from exc
            if not isinstance(receipt, dict):
                raise bad(src, f"receipts/{key}.json is not a JSON object")
        taken: dict[str, dict[str, Any]] = {}
        for key, record in results.items():
            why = importable(record, kind_of)
            if why is None:
                taken[key] = record
            else:
                report.skipped.append([key, why])
        try:
            _commit_import(cache, src, taken, staged, receipts, report)
        except (OSError, CacheError, sqlite3.Error) as exc:
            raise _cache_problem(cache, src, exc) from exc
    return report


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover - the loop always returns


def _free_bytes(cache: Cache) -> int:
    """Free bytes on the disk holding the cache (its nearest existing folder)."""
    folder = cache.root
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:  # pragma: no cover - an existing folder has a disk
        return 1 << 62


def _disk_full(cache: Cache, src: Path, needed: int | None = None) -> CacheError:
    free = _free_bytes(cache)
    need = f"; the archive needs {_human(needed)}" if needed is not None else ""
    msg = (
        f"cannot import {str(src)!r}: the disk holding the cache is full ({_human(free)} free"
        f"{need}); free some space (`motionflow cache gc`) or pass --cache DIR on another disk;"
        " nothing was imported"
    )
    return CacheError(msg)


_READ_ONLY_ERRNOS = frozenset({errno.EACCES, errno.EROFS, errno.EPERM})


def _cache_problem(cache: Cache, src: Path, exc: BaseException) -> MotionflowError:
    """``exc`` (raised while writing to the cache) as the message a user can act on."""
    if isinstance(exc, CacheError) and ("read-only" in str(exc) or " is full" in str(exc)):
        return CacheError(f"cannot import {str(src)!r}: {exc}; nothing was imported")
    for cause in (exc, exc.__cause__, exc.__context__):
        full = isinstance(cause, sqlite3.Error) and "disk is full" in str(cause)
        if full or (isinstance(cause, OSError) and cause.errno == errno.ENOSPC):
            return _disk_full(cache, src)
        if (isinstance(cause, OSError) and cause.errno in _READ_ONLY_ERRNOS) or (
            cause is not None and "readonly" in str(cause).replace("read-only", "readonly")
        ):
            msg = (
                f"cannot import {str(src)!r}: the cache folder {str(cache.root)!r} is read-only"
                f" ({cause}); pass --cache DIR or set MOTIONFLOW_CACHE to a writable folder;"
                " nothing was imported"
            )
            return CacheError(msg)
    if isinstance(exc, MotionflowError):
        return exc
    msg = f"cannot import {str(src)!r} into the cache {str(cache.root)!r}: {exc}"
    return CacheError(msg)


def _check_blob(src: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    """Hash a blob's data in memory-sized chunks, writing nothing: its length and digest."""
    handle = tar.extractfile(member)
    if handle is None:  # pragma: no cover - regular files always have data
        raise bad(src, f"{member.name!r} has no data")
    hasher = blake3.blake3()
    read = 0
    try:
        while chunk := handle.read(min(_CHUNK, member.size - read + 1)):
            read += len(chunk)
            if read > member.size:  # pragma: no cover - tarfile stops at the declared size
                raise bad(src, f"{member.name!r} is longer than its header says")
            hasher.update(chunk)
    except (tarfile.ReadError, EOFError):
        pass  # the data ends early: reported just below
    if read != member.size:
        raise bad(src, f"{member.name!r} is shorter than its header says (truncated)")
    if hasher.hexdigest() != PurePosixPath(member.name).name:
        msg = f"{member.name!r} does not match its digest (corrupt or tampered with)"
        raise bad(src, msg)


def _check_body(src: Path, body: Any) -> None:
    """Refuse a ``results.json`` that is not an export of a version we read."""
    if not isinstance(body, dict) or body.get("format") != EXPORT_FORMAT:
        raise bad(src, "results.json is missing or is not a motionflow export")
    if body.get("version") != _EXPORT_VERSION or not isinstance(body.get("results"), dict):
        raise bad(src, f"export version {body.get('version')!r} is not supported")


def _wanted_sizes(src: Path, body: Any, kind_of: KindOf) -> dict[str, int]:
    """``{digest: size}`` of the files the records of ``results.json`` say they use.

    The records are checked here too (against their own sizes; again once the archive's files
    are known), so a forged one is named before any file is decompressed.
    """
    _check_body(src, body)
    wanted: dict[str, int] = {}
    for record in body["results"].values():
        outputs = record.get("outputs") if isinstance(record, dict) else None
        for out in outputs.values() if isinstance(outputs, dict) else []:
            if isinstance(out, dict) and isinstance(out.get("file"), str):
                size = out.get("size")
                valid = isinstance(size, int) and not isinstance(size, bool)
                wanted[out["file"]] = size if valid and isinstance(size, int) else -1
    for key, record in body["results"].items():
        check_record(src, key, record, wanted, kind_of)
    return wanted


def _scan(cache: Cache, src: Path, kind_of: KindOf) -> dict[str, int]:
    """Every member's declared size, by name, read from the headers before anything is written.

    Refuses what no export holds (odd names, links, devices, sparse files, duplicates), files
    over the limits, blobs no record of ``results.json`` (which comes first) uses at that size,
    and archives whose files would not fit on the disk holding the cache. Each header is
    checked before its data is decompressed, so decompression never goes past the limits, the
    free space or the sizes the records declare; blobs are hashed on the way (in memory), so a
    forged one is refused before a byte of it is written.

    Raises:
        UsageError: naming the archive and the member.
        CacheError: the disk holding the cache is too full for the archive.
    """
    free = _free_bytes(cache)
    declared: dict[str, int] = {}
    wanted: dict[str, int] | None = None
    total = 0
    try:
        with tarfile.open(src, "r:gz") as tar:
            for count, member in enumerate(tar, 1):
                if count > _MAX_MEMBERS:
                    raise bad(src, f"more than {_MAX_MEMBERS} members")
                kind = member_kind(member.name)
                if kind is None:
                    raise bad(src, f"unexpected member {member.name!r}")
                if kind == "dir":
                    if not member.isdir():
                        raise bad(src, f"{member.name!r} is not a folder")
                    continue
                if member.issparse() or member.sparse is not None:
                    raise bad(src, f"{member.name!r} is a sparse file, which no export holds")
                if not member.isreg():
                    raise bad(src, f"{member.name!r} is a link or device, not a file")
                if member.name in declared:
                    raise bad(src, f"{member.name!r} appears twice")
                limit = _MAX_BLOB_BYTES if kind == "blob" else _MAX_JSON_BYTES
                if member.size > limit:
                    raise bad(src, f"{member.name!r} is larger than {limit} bytes")
                if kind == "blob":
                    digest = "blake3:" + PurePosixPath(member.name).name
                    if wanted is None:
                        raise bad(src, f"{member.name!r} comes before results.json")
                    if wanted.get(digest) != member.size:
                        raise bad(
                            src,
                            f"{member.name!r} declares {member.size} bytes, but no result in "
                            "results.json uses a file of that digest and size",
                        )
                declared[member.name] = member.size
                total += member.size
                if total > _MAX_TOTAL_BYTES:
                    raise bad(src, f"its files add up to more than {_MAX_TOTAL_BYTES} bytes")
                if total > free:
                    raise _disk_full(cache, src, total)
                if kind == "blob":
                    _check_blob(src, tar, member)
                elif kind == "results":
                    handle = tar.extractfile(member)
                    data = handle.read(member.size + 1) if handle is not None else b""
                    if len(data) != member.size:
                        raise bad(src, "results.json is shorter than its header says")
                    wanted = _wanted_sizes(src, json.loads(data), kind_of)
    except MotionflowError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, RecursionError) as exc:
        raise bad(src, f"{type(exc).__name__}: {exc}") from exc
    return declared


def _no_constant(name: str) -> Any:
    msg = f"{name} is not a number JSON allows"
    raise ValueError(msg)


def _stage_blob(
    cache: Cache, src: Path, handle: Any, staging: Path, digest: str, size: int
) -> Path:
    """Copy one blob into ``staging``, writing no more than its header declares."""
    hasher = blake3.blake3()
    path = staging / digest.removeprefix("blake3:")
    read = 0
    try:
        with path.open("wb") as out:
            while chunk := handle.read(min(_CHUNK, size - read + 1)):
                read += len(chunk)
                if read > size:
                    raise bad(src, f"blob {digest[:19]}… is longer than declared")
                hasher.update(chunk)
                out.write(chunk)
    except OSError as exc:
        if exc.errno == errno.ENOSPC or exc.errno in _READ_ONLY_ERRNOS:
            raise _cache_problem(cache, src, exc) from exc
        raise
    if read != size:
        raise bad(src, f"blob {digest[:19]}… is shorter than its header says (truncated)")
    if "blake3:" + hasher.hexdigest() != digest:
        msg = f"blob {digest[:19]}… does not match its digest (corrupt or tampered with)"
        raise bad(src, msg)
    return path


def _commit_import(
    cache: Cache,
    src: Path,
    results: dict[str, dict[str, Any]],
    staged: dict[str, Path],
    receipts: dict[str, bytes],
    report: ImportReport,
) -> None:

    writes: dict[str, dict[str, Any]] = {}
    needed: set[str] = set()
    for key, record in results.items():
        existing = raw_record(cache, key)
        if existing is None:
            origin = {"from": src.name, "at": utc_now()}
            meta = {**record.get("meta", {}), "imported_from": src.name}
            writes[key] = {**record, "meta": meta, "imported": origin}
            report.added.append(key)
        elif sorted(record_digests(existing)) != sorted(record_digests(record)):
            report.conflicts.append(key)
            continue
        elif all(cache.has_blob(d) for d in record_digests(existing)):
            report.present.append(key)
            continue
        else:
            report.restored.append(key)
        needed.update(record_digests(record))
        if is_paid(record):
            report.paid_usd += _usd(record)
    for digest in sorted(needed):
        if digest in staged and not cache.has_blob(digest):
            cache._commit(staged[digest], digest)
            report.blobs += 1
    index = open_index(cache, create=True)
    with index.transact():
        for key, record in writes.items():
            index.set("result:" + key, json.dumps(record))
        for key in report.restored:
            index.delete("meta:corrupt:" + key)
    folder = cache.root / "receipts"
    for key in [*report.added, *report.restored]:
        target = folder / f"{key}.json"
        if key in receipts and not target.exists():
            atomic_write_text(target, receipts[key].decode("utf-8", errors="replace"))
