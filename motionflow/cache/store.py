"""The cache directory: a diskcache index (key -> result record) and content-addressed blobs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3

from motionflow.errors import CacheError

__all__ = ["Cache", "default_cache_dir"]

_CHUNK = 1 << 20
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def default_cache_dir() -> Path:
    """``MOTIONFLOW_CACHE``, else the user cache dir (e.g. ``~/.cache/motionflow``)."""
    env = os.environ.get("MOTIONFLOW_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("motionflow", appauthor=False))


class Cache:
    """One cache directory shared by every recipe.

    Layout::

        index/          diskcache (SQLite): "result:<key>" -> record, "stat:..." -> digest
        blobs/ab/cdef…  content-addressed files named by blake3, read-only once stored
        tmp/            work folders and partial writes; never read as results
        locks/          one lock file per key being computed

    Keys are plain strings and values JSON text, never pickles: a shared cache must not be
    able to run code.
    """

    def __init__(self, root: Path) -> None:
        # Nothing is created until something is written: validating or planning a broken
        # recipe leaves no trace in the cache.
        self.root = root
        self._index: Any = None
        self._pending: dict[str, str] = {}
        self._absent = False

    def _ensure_dirs(self) -> None:
        try:
            for sub in ("blobs", "tmp", "locks"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = (
                f"cannot use the cache directory {str(self.root)!r}: {exc}; pass --cache DIR or"
                " set MOTIONFLOW_CACHE to a writable folder"
            )
            raise CacheError(msg) from exc

    def _open(self, *, create: bool) -> Any:
        if self._index is None:
            if not create and (self._absent or not (self.root / "index").is_dir()):
                self._absent = True  # until this process writes; no need to stat every lookup
                return None
            import diskcache

            self._ensure_dirs()
            try:
                self._index = diskcache.Cache(
                    str(self.root / "index"),
                    eviction_policy="none",
                    size_limit=2**62,
                    statistics=False,
                )
            except Exception as exc:
                msg = (
                    f"cannot open the cache index in {str(self.root)!r}: {exc}; if it is "
                    "corrupt, move the folder aside (results are kept in blobs/)"
                )
                raise CacheError(msg) from exc
        return self._index

    def _read(self, name: str) -> Any:
        index = self._open(create=False)
        raw = None if index is None else index.get(name)
        return None if raw is None else json.loads(raw)

    def _write(self, name: str, value: Any) -> None:
        self._open(create=True).set(name, json.dumps(value))

    def flush(self) -> None:
        """Write the file digests memoised since the last flush."""
        if self._pending:
            index = self._open(create=True)
            with index.transact():
                for name, digest in self._pending.items():
                    index.set(name, json.dumps(digest))
            self._pending.clear()

    def close(self) -> None:
        """Close the index."""
        if self._index is not None:
            self._index.close()
            self._index = None

    # -- results ------------------------------------------------------------------------------
    def get_result(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or None; a record whose blobs are gone is a miss."""
        record: dict[str, Any] | None = self._read("result:" + key)
        if record is None:
            return None
        for out in record.get("outputs", {}).values():
            if "file" in out and not self.blob_path(out["file"]).is_file():
                return None
        return record

    def get_results(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Records for many keys at once (missing ones are left out).

        One SQL query per 500 keys instead of one per key: planning a 10,000-variant sweep
        looks up 20,000 keys. It reads diskcache's table directly (its schema has been stable
        since diskcache 4); should that ever fail, it falls back to one lookup per key.
        """
        index = self._open(create=False)
        if index is None or not keys:
            return {}
        try:
            found = self._select(index, keys)
        except (AttributeError, TypeError, ValueError, sqlite3.Error):
            found = {k: r for k in keys if (r := self._read("result:" + k)) is not None}
        return {
            key: record
            for key, record in found.items()
            if all(
                self.blob_path(out["file"]).is_file()
                for out in record.get("outputs", {}).values()
                if "file" in out
            )
        }

    @staticmethod
    def _select(index: Any, keys: list[str]) -> dict[str, dict[str, Any]]:
        disk = index._disk  # diskcache internals: see get_results
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):
            wanted = ["result:" + k for k in keys[start : start + 500]]
            marks = ",".join("?" * len(wanted))
            query = (  # only "?" placeholders are interpolated
                "SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN "  # noqa: S608
                f"({marks}) AND (expire_time IS NULL OR expire_time > ?)"
            )
            rows = index._sql(
                query,
                [*wanted, time.time()],
            ).fetchall()
            for name, mode, filename, value in rows:
                text = disk.fetch(mode, filename, value, False)
                found[str(name).removeprefix("result:")] = json.loads(text)
        return found

    def put_result(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` under ``key``; its blobs must already be stored."""
        self._write("result:" + key, record)

    def get(self, name: str) -> Any:
        """A small bookkeeping value (memoised probes, fetched URLs)."""
        return self._read("meta:" + name)

    def set(self, name: str, value: Any) -> None:
        """Store a small bookkeeping value."""
        self._write("meta:" + name, value)

    # -- blobs --------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        """Where the blob with ``blake3:<hex>`` digest lives (whether or not it exists)."""
        hexd = digest.removeprefix("blake3:")
        return self.root / "blobs" / hexd[:2] / hexd[2:]

    def has_blob(self, digest: str) -> bool:
        """True when the blob is stored."""
        return self.blob_path(digest).is_file()

    def _commit(self, tmp: Path, digest: str) -> Path:
        final = self.blob_path(digest)
        if final.is_file():
            tmp.unlink()
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.chmod(_READ_ONLY)
        tmp.replace(final)
        return final

    def store_file(self, src: Path, *, move: bool = False) -> tuple[str, int]:
        """Store a file's bytes; returns ``(digest, size)``.

        With ``move`` the file (which must lie in this cache's ``tmp/``) is renamed into place
        after hashing; otherwise it is copied through a temp file. Either way a blob appears
        whole or not at all.
        """
        if move:
            digest = self.digest_path(src)
            size = src.stat().st_size
            self._commit(src, digest)
            return digest, size
        hasher = blake3.blake3()
        size = 0
        with self.temp_file() as tmp:
            with src.open("rb") as fin, tmp.open("wb") as fout:
                while chunk := fin.read(_CHUNK):
                    hasher.update(chunk)
                    fout.write(chunk)
                    size += len(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            digest = "blake3:" + hasher.hexdigest()
            self._commit(tmp, digest)
        return digest, size

    @contextlib.contextmanager
    def temp_file(self, suffix: str = "") -> Iterator[Path]:
        """A fresh path under ``tmp/``, removed on exit if still there."""
        self._ensure_dirs()
        path = self.root / "tmp" / f"{uuid.uuid4().hex}{suffix}.part"
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def workdir(self) -> Iterator[Path]:
        """An empty private folder under ``tmp/`` for a running stage, removed afterwards."""
        self._ensure_dirs()
        path = Path(tempfile.mkdtemp(prefix="work-", dir=self.root / "tmp"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # -- file digests with a stat memo -----------------------------------------------------------
    def digest_path(self, path: Path) -> str:
        """blake3 digest of a file, memoised on (device, inode, size, mtime_ns).

        An unchanged 100 MB video is hashed once, not on every run.
        """
        st = path.stat()
        memo = f"stat:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
        digest: str | None = self._pending.get(memo) or self._read(memo)
        if digest is None:
            from motionflow.keys import digest_file

            digest = digest_file(path)
            self._pending[memo] = digest
        return digest
