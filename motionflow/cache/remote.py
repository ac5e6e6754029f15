"""The remote side of the cache: results and their files on a team's S3-compatible store.

A miss of the local :class:`~motionflow.cache.store.Cache` asks the remote
(:meth:`RemoteCache.pull`) and a stored result goes up in the background
(:meth:`RemoteCache.push_later`), so nobody pays for a generation a colleague already has.
Layout under the store's prefix::

    v1/blobs/<64 hex>        a file, named by its blake3 digest
    v1/results/<key>.json    {"format": "motionflow-remote-result", "version": 1, "key",
                              "record", "receipt", "pushed_by", "pushed_at"}

(``v1/leases/`` belongs to :mod:`motionflow.cache.lease`; nothing here touches it.)

What comes down is untrusted data, checked with the rules of ``cache import``
(:mod:`motionflow.cache.remote_check`): every record is validated, every file's size and
blake3 digest verified before it is stored. Blobs go up before their record, and a
record is written only if none exists (``If-None-Match: *``), so a reader never sees a record
whose files are not there, and never a half-written one. The listings behind ``status`` are
in :mod:`motionflow.cache.remote_status`. docs/team.md has the whole story.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from motionflow.cache.archive import KindOf
from motionflow.cache.integrity import utc_now
from motionflow.cache.manage import open_index, raw_record, record_digests
from motionflow.cache.objects import Conflict, ObjectStore, RemoteError
from motionflow.cache.remote_check import (
    BLOBS,
    MAX_RESULT_BYTES,
    REMOTE_FORMAT,
    RESULTS,
    Damaged,
    check_prepared,
    check_result,
    fetch_blob,
    no_constant,
    result_object,
    transient,
)
from motionflow.cache.remote_config import SHARES
from motionflow.cache.remote_status import RemoteStatus, compare, local_shared, remote_keys
from motionflow.cache.store import Cache, cache_write_error, writing
from motionflow.errors import CacheError, UsageError
from motionflow.outfile import atomic_write_text

__all__ = ["REMOTE_FORMAT", "RemoteCache", "RemoteStatus"]

#: Free stage kinds whose (file-only) results are shared by default: prepared reference media.
_PREPARED = frozenset({"video.prepare", "image.prepare"})
_PULL_THREADS = 16
#: From this many misses at once, the remote's listing says which it has (see _listed).
_LIST_FROM = 64
_LIST_MAX = 200_000
_PUSH_THREADS = 4


class RemoteCache:
    """A team's shared results, attached to one local cache (``cache.remote``).

    Args:
        store: the bucket and prefix (:class:`~motionflow.cache.objects.ObjectStore`).
        cache: the local cache pulled results are stored in.
        kind_of: the stage kinds this installation knows (paid or not, declared outputs).
        share: ``default`` (paid results and prepared reference media) or ``all``.

    Attributes:
        problems: warnings met so far (refused objects, a remote that failed, failed pushes).
        damaged: key -> message, for results whose remote copy is unusable; a paid one is not
            paid for again by itself (:func:`~motionflow.cache.integrity.lost_paid_result`).
        pulled, pulled_bytes, pushed, pushed_bytes: results and file bytes moved.
    """

    def __init__(
        self, store: ObjectStore, cache: Cache, kind_of: KindOf, *, share: str = "default"
    ) -> None:
        if share not in SHARES:
            msg = f"share is {share!r}; it is one of {', '.join(SHARES)} (docs/team.md)"
            raise UsageError(msg)
        self.store = store
        self.cache = cache
        self.kind_of = kind_of
        self.share = share
        self.problems: list[str] = []
        self.damaged: dict[str, str] = {}
        self.pulled = 0
        self.pulled_bytes = 0
        self.pushed = 0
        self.pushed_bytes = 0
        self._absent: set[str] = set()
        self._offline: str | None = None
        self._lock = threading.Lock()
        self._pushing: ThreadPoolExecutor | None = None
        self._queued: list[tuple[str, Future[bool]]] = []
        self._reported = 0

    def __repr__(self) -> str:
        return f"RemoteCache({self.store.url!r}, share={self.share!r})"

    # -- policy --------------------------------------------------------------------------------
    def shares(self, record: dict[str, Any]) -> bool:
        """Whether the share policy sends (and takes) this record.

        ``default``: results of a paid stage kind (the kind's ``paid``, never the record's own
        claim) whose outputs are all files, and prepared reference media (``video.prepare``,
        ``image.prepare``: a file and its ``info``, whose measures are checked against the
        file when it comes down); ``all``: every result of a known stage kind, values included.
        """
        kind = record.get("stage_kind")
        stage = self.kind_of(kind) if isinstance(kind, str) else None
        if stage is None:
            return False
        if self.share == "all":
            return True
        outputs = record.get("outputs")
        if not isinstance(outputs, dict) or not outputs:
            return False
        if kind in _PREPARED:
            return True  # the file, and its ``info`` re-measured on it (check_prepared)
        return stage.paid and all(stage.outputs.get(name) == "file" for name in outputs)

    def _paid(self, record: dict[str, Any]) -> bool:
        kind = record.get("stage_kind")
        stage = self.kind_of(kind) if isinstance(kind, str) else None
        return bool(stage is not None and stage.paid)

    def _warn(self, message: str) -> None:
        with self._lock:
            self.problems.append(message)

    def _went_offline(self, exc: RemoteError) -> None:
        with self._lock:
            if self._offline is not None:
                return
            self._offline = str(exc)
            self.problems.append(
                f"{exc}. The remote cache is not used for the rest of this command: what it "
                "lacks is computed here, and `motionflow cache push` sends this machine's "
                "results later"
            )

    @property
    def offline(self) -> str | None:
        """Why the remote stopped being used in this process (it failed), or None."""
        return self._offline

    # -- pull ----------------------------------------------------------------------------------
    def pull(
        self,
        keys: Iterable[str],
        *,
        refresh: bool = False,
        on_done: Callable[[str], None] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Fetch the results of ``keys`` this cache lacks; the records now local, by key.

        Each remote record is validated and each file verified (size, blake3) before anything
        is stored; refused ones are reported in :attr:`problems` (and :attr:`damaged`). Keys
        the remote lacks are remembered for the rest of the process unless ``refresh``. A
        remote that fails is a miss and a warning, never an error.

        Raises:
            CacheError: the local cache cannot be written (read-only, full).
        """
        asked = list(dict.fromkeys(keys))
        if refresh:
            with self._lock:
                self._absent.difference_update(asked)
                for key in asked:
                    self.damaged.pop(key, None)
        found = self.cache.get_results(asked, remote=False)
        todo = [
            k for k in asked if k not in found and k not in self._absent and k not in self.damaged
        ]
        if not todo or self._offline is not None:
            return found
        if len(todo) >= _LIST_FROM:
            todo = self._listed(todo)
            if not todo:
                return found
        with self.cache.temp_file():  # makes tmp/ (and takes the cache's lock) in this thread
            pass
        if len(todo) == 1:
            fetched = [self._fetch_quietly(todo[0], on_done)]
        else:
            with ThreadPoolExecutor(
                min(_PULL_THREADS, len(todo)), thread_name_prefix="mf-pull"
            ) as pool:
                fetched = list(pool.map(lambda k: self._fetch_quietly(k, on_done), todo))
        taken = [item for item in fetched if item is not None]
        with writing(self.cache.root, "store results pulled from the remote cache"):
            for key, record, receipt, restoring in taken:
                if restoring:  # the same files as the local record: they are back
                    open_index(self.cache, create=True).delete("meta:corrupt:" + key)
                else:
                    self.cache.put_result(key, record, push=False)  # no echo
                if receipt is not None:
                    target = self.cache.root / "receipts" / f"{key}.json"
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        text = json.dumps(receipt, indent=1, sort_keys=True)
                        atomic_write_text(target, text)
        if taken:
            found.update(self.cache.get_results([k for k, *_ in taken], remote=False))
        return found

    def _listed(self, keys: list[str]) -> list[str]:
        """``keys`` the remote lists (the others are remembered as absent).

        Many misses at once (planning a sweep) cost one listing of ``v1/results/`` (1,000
        names a request) instead of a GET each, unless the remote holds far more results than
        are asked for; then (or when the listing fails) every key is asked for on its own.
        """
        held: set[str] = set()
        try:
            for count, (name, _) in enumerate(self.store.list(RESULTS)):
                if count >= max(_LIST_MAX, 10 * len(keys)):
                    return keys
                held.add(name.removeprefix(RESULTS).removesuffix(".json"))
        except RemoteError as exc:
            if not transient(exc):  # pragma: no cover - a listing has no size bound
                return keys
            self._went_offline(exc)
            return []
        listed = [k for k in keys if k in held]
        with self._lock:
            self._absent.update(k for k in keys if k not in held)
        return listed

    def _fetch_quietly(
        self, key: str, on_done: Callable[[str], None] | None
    ) -> tuple[str, dict[str, Any], dict[str, Any] | None, bool] | None:
        where = f"{self.store.url}{RESULTS}{key}.json"
        try:
            if self._offline is not None:
                return None
            return self._fetch(key)
        except Damaged as exc:
            self._refuse(key, where, str(exc))
            return None
        except RemoteError as exc:
            if transient(exc):
                self._went_offline(exc)
            else:
                self._refuse(key, where, str(exc))
            return None
        except OSError as exc:  # writing here: a full or read-only cache stops the command
            problem = cache_write_error(self.cache.root, exc, "store a pulled result")
            if problem is not None:
                raise problem from exc
            self._warn(f"could not pull {where}: {exc}; it is made here instead")
            return None
        finally:
            if on_done is not None:
                on_done(key)

    def _refuse(self, key: str, where: str, why: str) -> None:
        message = (
            f"the remote cache's copy of the result {key[:12]}… ({where}) is damaged: {why}. "
            "It is not paid for again by itself: push it again from a machine with a good copy "
            f"(`motionflow cache push --key {key[:12]}`), or delete {where} to allow paying "
            "for it again"
        )
        with self._lock:
            self.damaged[key] = message
            self.problems.append(f"refused {where}: {why}; nothing of it was stored")

    def _fetch(self, key: str) -> tuple[str, dict[str, Any], dict[str, Any] | None, bool] | None:
        """Download and check one result: ``(key, record, receipt, restoring)``, or None.

        Raises:
            Damaged: the object or one of its files is unusable (why).
            RemoteError: the store failed.
        """
        got = self.store.get(f"{RESULTS}{key}.json", max_bytes=MAX_RESULT_BYTES)
        if got is None:
            with self._lock:
                self._absent.add(key)
            return None
        record, receipt = check_result(key, got[0], self.kind_of)
        if not self.shares(record):  # not taken (values under "default"): not damage
            with self._lock:
                self._absent.add(key)
            return None
        local = raw_record(self.cache, key)
        restoring = local is not None
        if local is not None and sorted(record_digests(local)) != sorted(record_digests(record)):
            self._warn(
                f"kept the local result {key[:12]}…: the remote cache holds other files for it "
                "(another take); `motionflow cache forget KEY` first to take the remote one"
            )
            with self._lock:
                self._absent.add(key)
            return None
        for out in record["outputs"].values():
            if "file" in out:
                stored = fetch_blob(self.store, self.cache, out["file"], out["size"])
                with self._lock:
                    self.pulled_bytes += stored
        if self.share != "all" and record["stage_kind"] in _PREPARED:
            check_prepared(self.cache, record)
        origin = {"from": self.store.url, "at": utc_now()}
        with self._lock:
            self.pulled += 1
        return key, {**record, "remote": origin}, receipt, restoring

    # -- push ----------------------------------------------------------------------------------
    def push(
        self,
        key: str,
        record: dict[str, Any] | None = None,
        *,
        check_blobs: bool = False,
        repair: bool = False,
    ) -> bool:
        """Send one result (synchronously): its files first, then its record, if shared.

        Args:
            key: the result's key.
            record: its record (default: read from the local cache).
            check_blobs: make sure every file is on the remote even when the record is.
            repair: upload every file again and replace a remote record that differs (what
                ``motionflow cache push --key`` does for a damaged remote copy).

        Returns:
            True when the record was written (False: not shared, or the remote had it).

        Raises:
            RemoteError: the store failed.
            CacheError: a file of the result is missing here.
        """
        if record is None:
            record = raw_record(self.cache, key)
            if record is None:
                msg = f"cannot push {key[:12]}…: it is not in the cache {str(self.cache.root)!r}"
                raise CacheError(msg)
        if not self.shares(record):
            return False
        name = f"{RESULTS}{key}.json"
        if not (check_blobs or repair) and self.store.head(name) is not None:
            return False
        for digest in sorted(set(record_digests(record))):
            path = self.cache.blob_path(digest)
            try:
                size = path.stat().st_size
            except OSError:
                msg = (
                    f"cannot push {key[:12]}…: its file {digest[:19]}… is missing from the "
                    "cache (`motionflow cache verify` says more)"
                )
                raise CacheError(msg) from None
            blob = BLOBS + digest.removeprefix("blake3:")
            if not repair:
                info = self.store.head(blob)
                if info is not None and info.size == size:
                    continue
            self.store.upload(blob, path)
            with self._lock:
                self.pushed_bytes += size
        data = result_object(key, record, self._receipt(key, record))
        try:
            self.store.put(name, data, if_none_match=True)
        except Conflict:
            if not repair:
                return False  # a teammate pushed it first: fine
            got = self.store.get(name, max_bytes=MAX_RESULT_BYTES)
            if got is not None:
                with contextlib.suppress(Damaged):
                    theirs, _ = check_result(key, got[0], self.kind_of)
                    if sorted(record_digests(theirs)) == sorted(record_digests(record)):
                        return False  # the same files, now whole again
            try:
                self.store.put(name, data, if_match=got[1].etag if got else None)
            except Conflict:
                return False
        with self._lock:
            self.pushed += 1
            self.damaged.pop(key, None)
        return True

    def _receipt(self, key: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """The local receipt of ``key`` (a pulled or imported one), or one from the journal."""
        stored = self.cache.root / "receipts" / f"{key}.json"
        with contextlib.suppress(OSError, ValueError, RecursionError):
            receipt = json.loads(stored.read_text(encoding="utf-8"), parse_constant=no_constant)
            if isinstance(receipt, dict):
                return receipt
        from motionflow.cache.export import make_receipt

        made = make_receipt(self.cache, key, record, lambda _key: None)
        return made if made.get("job") is not None else None

    def push_later(self, key: str, record: dict[str, Any]) -> None:
        """Queue a push on a background thread (:meth:`wait` collects what failed)."""
        if not self.shares(record):
            return
        with self._lock:
            if self._pushing is None:
                self._pushing = ThreadPoolExecutor(_PUSH_THREADS, thread_name_prefix="mf-push")
            self._queued.append((key, self._pushing.submit(self._push_queued, key, record)))

    def _push_queued(self, key: str, record: dict[str, Any]) -> bool:
        if self._offline is not None:
            msg = f"the remote cache {self.store.where()} failed earlier ({self._offline})"
            raise RemoteError(msg)
        try:
            return self.push(key, record)
        except RemoteError as exc:
            if transient(exc):
                self._went_offline(exc)
            raise

    def wait(self) -> list[str]:
        """Wait for the queued pushes; the problems met since the last call (pulls too)."""
        with self._lock:
            queued, self._queued = self._queued, []
            pool, self._pushing = self._pushing, None
        failed = 0
        for key, future in queued:
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - a failed push never fails the run
                failed += 1
                if failed <= 5:
                    self._warn(f"could not push the result {key[:12]}…: {exc}")
        if failed > 5:
            self._warn(f"... and {failed - 5} more results could not be pushed")
        if failed:
            self._warn(
                f"{failed} results were not pushed to {self.store.url}; they are in the local "
                "cache: run `motionflow cache push` to send them"
            )
        if pool is not None:
            pool.shutdown(wait=True)
        with self._lock:
            new = self.problems[self._reported :]
            self._reported = len(self.problems)
        return new

    # -- listings ------------------------------------------------------------------------------
    def remote_keys(self) -> dict[str, int]:
        """``{key: size of its record object}`` of every result on the remote.

        Raises:
            RemoteError: the store failed.
        """
        return remote_keys(self.store)

    def local_shared(self) -> dict[str, dict[str, Any]]:
        """The records of this cache that the share policy sends, by key (files present)."""
        return local_shared(self.cache, self.shares)

    def status(self) -> RemoteStatus:
        """Which results are only here, only on the remote, in both; counts and bytes.

        Raises:
            RemoteError: the store failed.
        """
        return compare(self.store, self.cache, self.share, self.remote_keys(), self.local_shared())
