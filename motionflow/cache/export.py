"""Exporting selected results: one tar.gz with their records, files and receipts."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from motionflow.cache.integrity import utc_now
from motionflow.cache.journal import Journal
from motionflow.cache.manage import _usd, is_paid, raw_record, record_digests
from motionflow.cache.store import Cache
from motionflow.errors import CacheError, UsageError
from motionflow.outfile import DEV_NULL, output_kind

__all__ = ["EXPORT_FORMAT", "ExportReport", "export_results", "make_receipt"]

EXPORT_FORMAT = "motionflow-cache-export"
_EXPORT_VERSION = 1


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


def make_receipt(
    cache: Cache, key: str, record: dict[str, Any], receipt_of: Callable[[str], Any]
) -> Any:
    """The receipt of ``key``: its record's generation, its journal job, ``receipt_of(key)``."""
    written = receipt_of(key)
    job = None
    with contextlib.suppress(CacheError):
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


def export_results(
    cache: Cache, dest: Path, keys: list[str], receipt_of: Callable[[str], Any]
) -> ExportReport:
    """Write ``keys``' records, files and receipts to the tar.gz ``dest`` (atomically).

    Results whose file is missing or quarantined are skipped (and reported).

    Args:
        cache: the cache to export from.
        dest: the archive to write (``-``-like null devices discard it).
        keys: the results to export.
        receipt_of: the receipt a project wrote for a key (parsed JSON), or None; the caller
            knows where projects keep them (``motionflow.engine.references``).

    Raises:
        UsageError: nothing exportable, or ``dest`` cannot be written.
    """
    report = ExportReport(str(dest))
    results: dict[str, dict[str, Any]] = {}
    for key in keys:
        record = raw_record(cache, key)
        if record is None:
            report.skipped.append([key, "not in the cache"])
        elif not all(cache.has_blob(d) for d in record_digests(record)):
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
        "created_at": utc_now(),
        "results": results,
    }
    discard = output_kind(dest, "the export") == "discard"
    tmp = DEV_NULL if discard else dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, "w:gz") as tar:
            _add_bytes(tar, "results.json", json.dumps(body, indent=1, sort_keys=True).encode())
            seen: set[str] = set()
            for key, record in results.items():
                receipt = make_receipt(cache, key, record, receipt_of)
                text = json.dumps(receipt, indent=1, sort_keys=True)
                _add_bytes(tar, f"receipts/{key}.json", text.encode())
                if is_paid(record):
                    report.paid_usd += _usd(record)
                for digest in record_digests(record):
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
