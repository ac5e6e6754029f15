"""Sharing results between caches: export selected results (a tarball with receipts), import
them after checking every member, so a teammate reuses generations without paying again.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import shutil
import sqlite3
import tarfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import blake3

from motionflow.cache.integrity import _now
from motionflow.cache.manage import (
    _CHUNK,
    _HEX64,
    _digests,
    _index,
    _raw_record,
    _usd,
    is_paid,
)
from motionflow.cache.store import Cache
from motionflow.errors import CacheError, MotionflowError, UsageError
from motionflow.infile import NOT_REGULAR

__all__ = [
    "EXPORT_FORMAT",
    "ExportReport",
    "ImportReport",
    "export_results",
    "import_results",
]

#: Limits on an imported archive (untrusted input).
EXPORT_FORMAT = "motionflow-cache-export"
_EXPORT_VERSION = 1
_MAX_JSON_BYTES = 64 << 20
_MAX_BLOB_BYTES = 16 << 30
_MAX_MEMBERS = 200_000
_MAX_TOTAL_BYTES = 256 << 30


# -- export / import -----------------------------------------------------------------------------
@dataclass
class ExportReport:
    """What ``export`` wrote."""

    path: str
    keys: list[str] = field(default_factory=list)
    skipped: list[list[str]] = field(default_factory=list)
    blobs: int = 0
    bytes: int = 0
    paid_usd: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report."""
        return {**asdict(self), "paid_usd": round(self.paid_usd, 2)}


def _receipt(cache: Cache, key: str, record: dict[str, Any], projects: list[Path]) -> Any:
    from motionflow.manifest import Manifest

    written = None
    for project in projects:
        for manifest in sorted((project / "out").glob("*/manifest.json")):
            for entry in Manifest.load(manifest.parent).entries.values():
                if entry.get("key") != key:
                    continue
                for rel in entry.get("files", {}):
                    if rel.endswith(".receipt.json"):
                        with contextlib.suppress(OSError, ValueError):
                            written = json.loads(
                                (manifest.parent / rel).read_text(encoding="utf-8")
                            )
                            break
    job = None
    with contextlib.suppress(CacheError):
        from motionflow.cache.journal import Journal

        found = Journal(cache.root).get(key)
        job = asdict(found) if found is not None else None
    return {
        "key": key,
        "stage_kind": record.get("stage_kind"),
        "generation": record.get("meta", {}),
        "created_at": record.get("created_at"),
        "job": job,
        "receipt": written,
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def export_results(cache: Cache, dest: Path, keys: list[str], projects: list[Path]) -> ExportReport:
    """Write ``keys``' records, files and receipts to the tar.gz ``dest`` (atomically).

    Results whose file is missing or quarantined are skipped (and reported).

    Raises:
        UsageError: nothing exportable, or ``dest`` cannot be written.
    """
    report = ExportReport(str(dest))
    results: dict[str, dict[str, Any]] = {}
    for key in keys:
        record = _raw_record(cache, key)
        if record is None:
            report.skipped.append([key, "not in the cache"])
        elif not all(cache.has_blob(d) for d in _digests(record)):
            report.skipped.append([key, "its file is missing or quarantined"])
        else:
            results[key] = record
    if not results:
        why = "; ".join(f"{k[:12]}…: {w}" for k, w in report.skipped) or "no keys selected"
        msg = f"nothing to export ({why}); `motionflow cache ls` lists what the cache holds"
        raise UsageError(msg)
    body = {
        "format": EXPORT_FORMAT,
        "version": _EXPORT_VERSION,
        "created_at": _now(),
        "results": results,
    }
    from motionflow.outfile import DEV_NULL, output_kind

    discard = output_kind(dest, "the export") == "discard"
    tmp = DEV_NULL if discard else dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, "w:gz") as tar:
            _add_bytes(tar, "results.json", json.dumps(body, indent=1, sort_keys=True).encode())
            seen: set[str] = set()
            for key, record in results.items():
                receipt = _receipt(cache, key, record, projects)
                text = json.dumps(receipt, indent=1, sort_keys=True)
                _add_bytes(tar, f"receipts/{key}.json", text.encode())
                if is_paid(record):
                    report.paid_usd += _usd(record)
                for digest in _digests(record):
                    if digest in seen:
                        continue
                    seen.add(digest)
                    path = cache.blob_path(digest)
                    info = tarfile.TarInfo("blobs/" + digest.removeprefix("blake3:"))
                    info.size = path.stat().st_size
                    info.mtime = int(path.stat().st_mtime)
                    info.mode = 0o644
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                    report.blobs += 1
        if not discard:
            tmp.replace(dest)
    except OSError as exc:
        msg = f"cannot write the export {str(dest)!r}: {exc}; choose a writable path"
        raise UsageError(msg) from exc
    finally:
        if not discard:  # never the null device itself
            tmp.unlink(missing_ok=True)
    report.keys = list(results)
    report.bytes = dest.stat().st_size
    return report


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


def _bad(src: Path, why: str) -> UsageError:
    msg = f"{str(src)!r} is not a usable motionflow export: {why}; nothing was imported"
    return UsageError(msg)


def _member_kind(name: str) -> str | None:
    """``results``, ``blob``, ``receipt`` or ``dir`` for an allowed member name, else None."""
    path = PurePosixPath(name)
    if name.startswith("/") or "\\" in name or any(p in {"..", ""} for p in name.split("/")):
        return None
    parts = path.parts
    if parts == ("results.json",):
        return "results"
    if parts in {("blobs",), ("receipts",)}:
        return "dir"
    if len(parts) == 2 and parts[0] == "blobs" and _HEX64.fullmatch(parts[1]):
        return "blob"
    if len(parts) == 2 and parts[0] == "receipts" and parts[1].endswith(".json"):
        return "receipt" if _HEX64.fullmatch(parts[1].removesuffix(".json")) else None
    return None


#: The extensions of the files our stages write (``executor.store`` keeps ``path.suffix``).
_EXTENSIONS = frozenset(
    {
        *(".mp4", ".m4v", ".mov", ".mkv", ".webm"),
        *(".png", ".jpg", ".jpeg", ".gif", ".webp"),
        *(".wav", ".m4a", ".mp3", ".txt", ".json"),
    }
)
#: A free result's file (never imported, see _importable) may have any plain suffix: a python
#: stage keeps whatever its function wrote. It is still checked, so one rule covers a record.
_PLAIN_EXT = re.compile(r"(\.[a-z0-9]{1,16})?")
_DIGEST = re.compile(r"blake3:[0-9a-f]{64}")
_RECORD_FIELDS = ("stage_kind", "outputs", "meta", "created_at", "motionflow_version")
#: Generous bounds on a record's JSON (ours are far smaller; a python stage's value may not be).
_MAX_TEXT = 64 << 10
_MAX_NAME = 256
_MAX_DEPTH = 32
_MAX_ITEMS = 10_000


def _json_problem(value: Any, where: str, depth: int = 0) -> tuple[str, str] | None:
    """``(field, why)`` when ``value`` is not small, finite JSON (bounded depth, text, size)."""
    if depth > _MAX_DEPTH:
        return where, f"is nested deeper than {_MAX_DEPTH} levels"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return None if math.isfinite(value) else (where, f"{value!r} is not a finite number")
    if isinstance(value, str):
        return None if len(value) <= _MAX_TEXT else (where, f"is text longer than {_MAX_TEXT}")
    if isinstance(value, list | dict):
        if len(value) > _MAX_ITEMS:
            return where, f"has more than {_MAX_ITEMS} items"
        for name, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(name, str) and len(name) > _MAX_NAME:
                return where, f"has a name longer than {_MAX_NAME}"
            inner = f"{where}.{name}" if isinstance(name, str) else f"{where}[{name}]"
            problem = _json_problem(item, inner, depth + 1)
            if problem is not None:
                return problem
        return None
    return where, f"holds a {type(value).__name__}"  # pragma: no cover - not from json.loads


def _check_record(src: Path, key: str, record: Any, sizes: dict[str, int]) -> dict[str, Any]:
    """The record rebuilt from its known fields, if it passes the rules our own records follow.

    Args:
        sizes: bytes of every blob the archive holds or the cache has, by digest.

    Raises:
        UsageError: naming ``results.json``, the result and the field that breaks a rule.
    """
    from motionflow.money import usd_problem
    from motionflow.stages.registry import get_stage, known_kinds

    if not _HEX64.fullmatch(key) or not isinstance(record, dict):
        raise _bad(src, f"results.json: result {key[:16]!r} is not a key and a record")

    def refuse(where: str, why: str) -> UsageError:
        return _bad(src, f"results.json: result {key[:12]}…, field {where}: {why}")

    kind = record.get("stage_kind")
    if not isinstance(kind, str) or kind not in known_kinds():
        raise refuse("stage_kind", f"{str(kind)[:_MAX_NAME]!r} is not a known stage kind")
    stage = get_stage(kind)
    declared = stage.outputs
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        raise refuse("outputs", "is not a set of outputs")
    for name, out in outputs.items():
        where = f"outputs[{name[:_MAX_NAME]!r}]"
        if not name.isidentifier() or name not in declared:
            raise refuse(
                where, f"{kind!r} declares no output of that name (it has {list(declared)})"
            )
        if not isinstance(out, dict):
            raise refuse(where, "is not an object")
        if declared[name] == "value":
            if set(out) != {"value"}:
                raise refuse(where, "a value output holds only 'value'")
            if problem := _json_problem(out["value"], f"{where}.value"):
                raise refuse(*problem)
            continue
        if set(out) != {"file", "size", "ext"}:
            raise refuse(where, "a file output holds exactly 'file', 'size' and 'ext'")
        digest = out["file"]
        if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
            raise refuse(f"{where}.file", "is not a digest 'blake3:<64 hex digits>'")
        if digest not in sizes:
            raise refuse(f"{where}.file", f"the file {digest[:19]}… is not in the archive")
        size = out["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size != sizes[digest]:
            raise refuse(f"{where}.size", f"{str(size)[:32]!r} is not the file's size")
        ext = out["ext"]
        plain = isinstance(ext, str) and _PLAIN_EXT.fullmatch(ext) and not stage.paid
        if ext not in _EXTENSIONS and not plain:
            allowed = ", ".join(sorted(_EXTENSIONS))
            raise refuse(f"{where}.ext", f"{str(out['ext'])[:32]!r} is not one of {allowed}")
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        raise refuse("meta", "is not an object")
    if "estimated_usd" in meta and (why := usd_problem(meta["estimated_usd"])):
        raise refuse("meta.estimated_usd", why[:_MAX_NAME])
    if problem := _json_problem(meta, "meta"):
        raise refuse(*problem)
    if not isinstance(meta.get("job_id", ""), str):
        raise refuse("meta.job_id", "is not text")
    for name in ("created_at", "motionflow_version"):
        value = record.get(name, "")
        if not isinstance(value, str) or len(value) > 64:
            raise refuse(name, "is not a short text")
    return {name: record[name] for name in _RECORD_FIELDS if name in record}


def _importable(record: dict[str, Any]) -> str | None:
    """Why a valid record is not taken (the trust model, docs/cache.md), or None to take it."""
    from motionflow.stages.registry import get_stage

    stage = get_stage(record["stage_kind"])
    if not stage.paid:
        return "not a paid result: recomputed locally, for free"
    if any(stage.outputs[name] != "file" for name in record["outputs"]):
        return "holds values, which are never imported"  # pragma: no cover - no such kind yet
    return None


def import_results(cache: Cache, src: Path) -> ImportReport:
    """Add an export's results to the cache, verifying every file's digest first.

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
    declared = _scan(cache, src)
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
                    kind = _member_kind(member.name)
                    if kind == "dir" and member.isdir():
                        continue
                    if declared.get(member.name) != member.size or member.name in names:
                        raise _bad(src, f"{member.name!r} changed while it was being imported")
                    names.add(member.name)
                    handle = tar.extractfile(member)
                    if handle is None:  # pragma: no cover - regular files always have data
                        raise _bad(src, f"{member.name!r} has no data")
                    if kind == "blob":
                        digest = "blake3:" + PurePosixPath(member.name).name
                        staged[digest] = _stage_blob(
                            cache, src, handle, staging, digest, member.size
                        )
                    else:
                        data = handle.read(member.size + 1)
                        if len(data) != member.size:
                            raise _bad(src, f"{member.name!r} is shorter than its header says")
                        if kind == "results":
                            body = json.loads(data)
                        else:
                            receipts[PurePosixPath(member.name).stem] = data
                if set(declared) - names:
                    raise _bad(src, "members vanished while it was being imported")
        except MotionflowError:
            raise
        except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, RecursionError) as exc:
            raise _bad(src, f"{type(exc).__name__}: {exc}") from exc
        _check_body(src, body)
        sizes = {digest: path.stat().st_size for digest, path in staged.items()}
        for record in body["results"].values():
            for digest in _digests(record) if isinstance(record, dict) else []:
                if isinstance(digest, str) and digest not in sizes and cache.has_blob(digest):
                    sizes[digest] = cache.blob_path(digest).stat().st_size
        results = {k: _check_record(src, k, r, sizes) for k, r in body["results"].items()}
        for key, data in receipts.items():
            try:
                receipt = json.loads(data, parse_constant=_no_constant)
            except (ValueError, RecursionError) as exc:
                raise _bad(src, f"receipts/{key}.json is not JSON ({exc})") from exc
            if not isinstance(receipt, dict):
                raise _bad(src, f"receipts/{key}.json is not a JSON object")
        taken: dict[str, dict[str, Any]] = {}
        for key, record in results.items():
            why = _importable(record)
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
        raise _bad(src, f"{member.name!r} has no data")
    hasher = blake3.blake3()
    read = 0
    try:
        while chunk := handle.read(min(_CHUNK, member.size - read + 1)):
            read += len(chunk)
            if read > member.size:  # pragma: no cover - tarfile stops at the declared size
                raise _bad(src, f"{member.name!r} is longer than its header says")
            hasher.update(chunk)
    except (tarfile.ReadError, EOFError):
        pass  # the data ends early: reported just below
    if read != member.size:
        raise _bad(src, f"{member.name!r} is shorter than its header says (truncated)")
    if hasher.hexdigest() != PurePosixPath(member.name).name:
        msg = f"{member.name!r} does not match its digest (corrupt or tampered with)"
        raise _bad(src, msg)


def _check_body(src: Path, body: Any) -> None:
    """Refuse a ``results.json`` that is not an export of a version we read."""
    if not isinstance(body, dict) or body.get("format") != EXPORT_FORMAT:
        raise _bad(src, "results.json is missing or is not a motionflow export")
    if body.get("version") != _EXPORT_VERSION or not isinstance(body.get("results"), dict):
        raise _bad(src, f"export version {body.get('version')!r} is not supported")


def _wanted_sizes(src: Path, body: Any) -> dict[str, int]:
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
        _check_record(src, key, record, wanted)
    return wanted


def _scan(cache: Cache, src: Path) -> dict[str, int]:
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
                    raise _bad(src, f"more than {_MAX_MEMBERS} members")
                kind = _member_kind(member.name)
                if kind is None:
                    raise _bad(src, f"unexpected member {member.name!r}")
                if kind == "dir":
                    if not member.isdir():
                        raise _bad(src, f"{member.name!r} is not a folder")
                    continue
                if member.issparse() or member.sparse is not None:
                    raise _bad(src, f"{member.name!r} is a sparse file, which no export holds")
                if not member.isreg():
                    raise _bad(src, f"{member.name!r} is a link or device, not a file")
                if member.name in declared:
                    raise _bad(src, f"{member.name!r} appears twice")
                limit = _MAX_BLOB_BYTES if kind == "blob" else _MAX_JSON_BYTES
                if member.size > limit:
                    raise _bad(src, f"{member.name!r} is larger than {limit} bytes")
                if kind == "blob":
                    digest = "blake3:" + PurePosixPath(member.name).name
                    if wanted is None:
                        raise _bad(src, f"{member.name!r} comes before results.json")
                    if wanted.get(digest) != member.size:
                        raise _bad(
                            src,
                            f"{member.name!r} declares {member.size} bytes, but no result in "
                            "results.json uses a file of that digest and size",
                        )
                declared[member.name] = member.size
                total += member.size
                if total > _MAX_TOTAL_BYTES:
                    raise _bad(src, f"its files add up to more than {_MAX_TOTAL_BYTES} bytes")
                if total > free:
                    raise _disk_full(cache, src, total)
                if kind == "blob":
                    _check_blob(src, tar, member)
                elif kind == "results":
                    handle = tar.extractfile(member)
                    data = handle.read(member.size + 1) if handle is not None else b""
                    if len(data) != member.size:
                        raise _bad(src, "results.json is shorter than its header says")
                    wanted = _wanted_sizes(src, json.loads(data))
    except MotionflowError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, RecursionError) as exc:
        raise _bad(src, f"{type(exc).__name__}: {exc}") from exc
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
                    raise _bad(src, f"blob {digest[:19]}… is longer than declared")
                hasher.update(chunk)
                out.write(chunk)
    except OSError as exc:
        if exc.errno == errno.ENOSPC or exc.errno in _READ_ONLY_ERRNOS:
            raise _cache_problem(cache, src, exc) from exc
        raise
    if read != size:
        raise _bad(src, f"blob {digest[:19]}… is shorter than its header says (truncated)")
    if "blake3:" + hasher.hexdigest() != digest:
        msg = f"blob {digest[:19]}… does not match its digest (corrupt or tampered with)"
        raise _bad(src, msg)
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
        existing = _raw_record(cache, key)
        if existing is None:
            origin = {"from": src.name, "at": _now()}
            meta = {**record.get("meta", {}), "imported_from": src.name}
            writes[key] = {**record, "meta": meta, "imported": origin}
            report.added.append(key)
        elif sorted(_digests(existing)) != sorted(_digests(record)):
            report.conflicts.append(key)
            continue
        elif all(cache.has_blob(d) for d in _digests(existing)):
            report.present.append(key)
            continue
        else:
            report.restored.append(key)
        needed.update(_digests(record))
        if is_paid(record):
            report.paid_usd += _usd(record)
    for digest in sorted(needed):
        if digest in staged and not cache.has_blob(digest):
            cache._commit(staged[digest], digest)
            report.blobs += 1
    index = _index(cache, create=True)
    with index.transact():
        for key, record in writes.items():
            index.set("result:" + key, json.dumps(record))
        for key in report.restored:
            index.delete("meta:corrupt:" + key)
    folder = cache.root / "receipts"
    for key in [*report.added, *report.restored]:
        target = folder / f"{key}.json"
        if key in receipts and not target.exists():
            from motionflow.manifest import atomic_write_text

            atomic_write_text(target, receipts[key].decode("utf-8", errors="replace"))
