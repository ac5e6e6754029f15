"""What the team's remote cache holds, compared with this cache (``motionflow cache status``).

Listings of the remote's results and files, and of the local results the share policy sends;
:class:`~motionflow.cache.remote.RemoteCache` offers them as ``remote_keys``, ``local_shared``
and ``status``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from motionflow.cache.manage import HEX64, iter_records, record_digests
from motionflow.cache.objects import ObjectStore
from motionflow.cache.remote_check import BLOBS, RESULTS
from motionflow.cache.store import Cache

__all__ = ["RemoteStatus", "compare", "local_shared", "remote_keys"]


@dataclass
class RemoteStatus:
    """What ``motionflow cache status`` shows: results only here, only there, in both.

    Attributes:
        url: the remote (``s3://bucket/prefix/``).
        endpoint: its S3-compatible endpoint, or None (AWS S3).
        share: the share policy (``default`` or ``all``).
        local_only: keys this cache holds, that the policy shares, and the remote lacks.
        remote_only: keys the remote holds and this cache lacks.
        both: keys in both.
        local_only_bytes: the bytes of the files of ``local_only``.
        both_bytes: the bytes of the files of ``both`` (as recorded here).
        remote_only_bytes: the remote's files that no result of this cache uses.
        remote_bytes: every file and record on the remote.
    """

    url: str
    endpoint: str | None
    share: str
    local_only: list[str] = field(default_factory=list)
    remote_only: list[str] = field(default_factory=list)
    both: list[str] = field(default_factory=list)
    local_only_bytes: int = 0
    both_bytes: int = 0
    remote_only_bytes: int = 0
    remote_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """The machine-readable status."""
        return asdict(self)


def _bytes(record: dict[str, Any]) -> int:
    total = 0
    for out in (record.get("outputs") or {}).values():
        size = out.get("size") if isinstance(out, dict) else None
        if isinstance(size, int) and not isinstance(size, bool):
            total += size
    return total


def remote_keys(store: ObjectStore) -> dict[str, int]:
    """``{key: size of its record object}`` of every result on the remote.

    Raises:
        RemoteError: the store failed.
    """
    found: dict[str, int] = {}
    for name, size in store.list(RESULTS):
        stem = name.removeprefix(RESULTS).removesuffix(".json")
        if name.endswith(".json") and HEX64.fullmatch(stem):
            found[stem] = size
    return found


def local_shared(
    cache: Cache, shares: Callable[[dict[str, Any]], bool]
) -> dict[str, dict[str, Any]]:
    """The records of ``cache`` that ``shares`` (the share policy) sends, by key (files present)."""
    return {
        key: record
        for key, record in iter_records(cache)
        if shares(record) and all(cache.has_blob(d) for d in record_digests(record))
    }


def compare(
    store: ObjectStore,
    cache: Cache,
    share: str,
    remote: dict[str, int],
    local: dict[str, dict[str, Any]],
) -> RemoteStatus:
    """Which results are only here, only on the remote, in both; counts and bytes.

    Args:
        store: the remote (its files are listed here).
        cache: the local cache.
        share: the share policy's name.
        remote: the remote's results (:func:`remote_keys`).
        local: the local results the policy sends (:func:`local_shared`).

    Raises:
        RemoteError: the store failed.
    """
    blobs = {
        name.removeprefix(BLOBS): size
        for name, size in store.list(BLOBS)
        if HEX64.fullmatch(name.removeprefix(BLOBS))
    }
    present = cache.get_results(list(remote), remote=False)
    report = RemoteStatus(store.url, store.spec.endpoint_url, share)
    report.local_only = sorted(k for k in local if k not in remote)
    report.both = sorted(k for k in remote if k in present)
    report.remote_only = sorted(k for k in remote if k not in present)
    report.local_only_bytes = sum(_bytes(local[k]) for k in report.local_only)
    report.both_bytes = sum(_bytes(present[k]) for k in report.both)
    used_here = {
        d.removeprefix("blake3:")
        for record in [*local.values(), *present.values()]
        for d in record_digests(record)
    }
    report.remote_only_bytes = sum(s for h, s in blobs.items() if h not in used_here)
    report.remote_bytes = sum(blobs.values()) + sum(remote.values())
    return report
