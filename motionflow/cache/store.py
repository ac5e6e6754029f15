"""The cache directory: a diskcache index (key -> result record) and content-addressed blobs."""

from __future__ import annotations

import contextlib
import errno
import fcntl
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
from typing import Any, Protocol

import blake3

from motionflow.errors import CacheError

__all__ = ["Cache", "RemoteSide", "cache_write_error", "default_cache_dir", "writing"]


class RemoteSide(Protocol):
    """What the cache asks of an attached team remote
    (:class:`~motionflow.cache.remote.RemoteCache`): results it lacks, and results to share."""

    damaged: dict[str, str]

    def pull(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Fetch, verify and store the records of ``keys`` the remote has; returns them."""
        ...

    def push_later(self, key: str, record: dict[str, Any]) -> None:
        """Queue ``record`` to go up, if the share policy covers it."""
        ...


_CHUNK = 1 << 20
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def default_cache_dir() -> Path:
    """``MOTIONFLOW_CACHE``, else the user cache dir (e.g. ``~/.cache/motionflow``)."""
    env = os.environ.get("MOTIONFLOW_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("motionflow", appauthor=False))


_READ_ONLY_ERRNOS = frozenset({errno.EACCES, errno.EROFS, errno.EPERM})


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cause = todo.pop(0)
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        todo += [cause.__cause__, cause.__context__]


def _try_create(folder: Path) -> OSError | None:
    """The error creating (then removing) a file in ``folder`` meets, or None."""
    try:
        fd, name = tempfile.mkstemp(prefix=".probe-", dir=folder)
    except OSError as exc:
        return exc
    os.close(fd)
    with contextlib.suppress(OSError):
        Path(name).unlink()
    return None


def _probe(root: Path) -> OSError | None:
    """The error writing into the cache at ``root`` meets now (read-only, full), or None.

    SQLite says only "unable to open database file" when the index folder is read-only, so
    the folder is tried for real: a file is created in it and removed, and the index file is
    opened for writing. Root ignores permission bits but not a read-only mount; both show.
    """
    folder = root
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    for sub in ("index", "blobs", "tmp", "journal"):
        if (root / sub).is_dir() and (problem := _try_create(root / sub)) is not None:
            return problem
    db = root / "index" / "cache.db"
    if db.is_file():
        try:
            os.close(os.open(db, os.O_RDWR))
        except OSError as exc:
            return exc
    return _try_create(folder) if not (root / "index").is_dir() else None


def cache_write_error(root: Path, exc: BaseException, doing: str) -> CacheError | None:
    """``exc`` (met while ``doing`` writes to the cache at ``root``) as a message to act on.

    A read-only cache says so (the folder, the cause, the fix), a full disk too; None when
    ``exc`` is neither (the caller keeps its own message).
    """
    found: BaseException | None = None
    for cause in _causes(exc):
        text = str(cause).lower()
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, *_READ_ONLY_ERRNOS):
            found = cause
            break
        if isinstance(cause, sqlite3.Error) and (
            "readonly" in text or "read-only" in text or "disk is full" in text
        ):
            found = cause
            break
    if found is None and any(isinstance(c, sqlite3.Error) for c in _causes(exc)):
        found = _probe(root)
    if found is None:
        return None
    text = str(found).lower()
    full = (isinstance(found, OSError) and found.errno == errno.ENOSPC) or "full" in text
    if full:
        msg = (
            f"cannot {doing}: the disk holding the cache folder {str(root)!r} is full "
            f"({found}); free some space (`motionflow cache gc`) or pass --cache DIR (or set "
            "MOTIONFLOW_CACHE) to a folder on another disk"
        )
    else:
        msg = (
            f"cannot {doing}: the cache folder {str(root)!r} is read-only ({found}); make it "
            f"writable (e.g. `chmod -R u+w {root}`, or remount its disk read-write), or pass "
            "--cache DIR (or set MOTIONFLOW_CACHE) to a writable folder"
        )
    return CacheError(msg)


@contextlib.contextmanager
def writing(root: Path, doing: str) -> Iterator[None]:
    """Turn a failed write to the cache (read-only, full disk) into a :class:`CacheError`.

    Raises:
        CacheError: the cache could not be written; other errors pass through unchanged.
    """
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        problem = cache_write_error(root, exc, doing)
        if problem is None:
            raise
        raise problem from exc


class Cache:
    """One cache directory shared by every recipe.

    Layout::

        index/          diskcache (SQLite): "result:<key>" -> record, "stat:..." -> digest
        blobs/ab/cdef…  content-addressed files named by blake3, read-only once stored
        tmp/            work folders and partial writes; never read as results
        locks/          one lock file per key being computed

    Keys are plain strings and values JSON text, never pickles: a shared cache must not be
    able to run code.

    ``remote`` (None unless a team's remote cache is attached:
    :func:`motionflow.engine.team.open_team`) is asked on a miss, and told of every result
    stored (docs/team.md).
    """

    def __init__(self, root: Path) -> None:
        # Nothing is created until something is written: validating or planning a broken
        # recipe leaves no trace in the cache.
        self.root = root
        self._index: Any = None
        self._pending: dict[str, str] = {}
        self._absent = False
        self._in_use: int | None = None
        self._dirs_made = False
        self.remote: RemoteSide | None = None

    def _ensure_dirs(self) -> None:
        if self._dirs_made:  # once per process: three mkdir calls per stored result add up
            return
        try:
            for sub in ("blobs", "tmp", "locks"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._hold()
            self._dirs_made = True
        except OSError as exc:
            problem = cache_write_error(self.root, exc, "use the cache")
            if problem is not None:
                raise problem from exc
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
                problem = _probe(self.root)
                if problem is not None:
                    found = cache_write_error(self.root, problem, "open the cache index")
                    if found is not None:
                        raise found from exc
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
        index = self._open(create=True)
        with writing(self.root, "write to the cache index"):
            index.set(name, json.dumps(value))

    def flush(self) -> None:
        """Write the file digests memoised since the last flush."""
        if self._pending:
            index = self._open(create=True)
            with writing(self.root, "write to the cache index"), index.transact():
                for name, digest in self._pending.items():
                    index.set(name, json.dumps(digest))
            self._pending.clear()

    def close(self) -> None:
        """Close the index, and let go of the cache (see :meth:`exclusive`)."""
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._in_use is not None:
            os.close(self._in_use)  # releases the flock
            self._in_use = None
        self._dirs_made = False

    # -- who uses the cache -------------------------------------------------------------------
    def _hold(self) -> None:
        """Take the shared lock ``locks/in-use`` for as long as this cache is open.

        Every process that reads or writes results holds it, so ``gc`` (which needs it
        exclusively) never deletes a file a running ``run`` is about to reuse. It waits while
        a ``gc`` holds it exclusively (gc takes seconds). A cache that cannot be written
        cannot be collected either: then no lock is needed and none is taken.
        """
        if self._in_use is not None:
            return
        path = self.root / "locks" / "in-use"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                return
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._in_use = fd

    def exclusive(self, doing: str) -> None:
        """Make sure no other process uses the cache until :meth:`close` (for ``gc``).

        Raises:
            CacheError: another process (a ``run``, most likely) has the cache open.
        """
        self._ensure_dirs()
        if self._in_use is None:  # pragma: no cover - a writable cache always has the lock
            return
        try:
            fcntl.flock(self._in_use, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fcntl.flock(self._in_use, fcntl.LOCK_SH)  # back to where we were
            msg = (
                f"cannot {doing}: another motionflow process (a `run`, most likely) is using "
                f"the cache {str(self.root)!r}, and {doing} could delete files it is about to "
                "reuse; nothing was changed. Wait for it to finish, then run the command again"
            )
            raise CacheError(msg) from exc

    # -- results ------------------------------------------------------------------------------
    def get_result(self, key: str, *, remote: bool = True) -> dict[str, Any] | None:
        """The record stored under ``key``, or None; a record whose blobs are gone is a miss.

        On a miss the remote cache, if one is attached (and ``remote``), is asked for it.
        """
        record: dict[str, Any] | None = self._read("result:" + key)
        if record is not None:
            for out in record.get("outputs", {}).values():
                if "file" in out and not self.blob_path(out["file"]).is_file():
                    record = None
                    break
        if record is None and remote and self.remote is not None:
            return self.remote.pull([key]).get(key)
        return record

    def get_results(self, keys: list[str], *, remote: bool = True) -> dict[str, dict[str, Any]]:
        """Records for many keys at once (missing ones are left out).

        The misses are asked of the remote cache, if one is attached (and ``remote``), at once.

        One SQL query per 500 keys instead of one per key: planning a 10,000-variant sweep
        looks up 20,000 keys. diskcache has no public batch read: ``Cache.get`` per key is
        about 3.5x slower here (20,000 lookups: ~700 ms against ~200 ms; inside
        ``transact()`` ~340 ms, but that takes sqlite's write lock, blocking every other
        run), so this reads diskcache's ``Cache`` table through its private ``_sql`` and
        ``_disk.fetch``. Its schema has been stable since diskcache 4; pyproject.toml pins
        the tested range (``<6``), and should the internals ever differ this falls back to
        one public lookup per key (slower, still right).
        """
        index = self._open(create=False)
        found: dict[str, dict[str, Any]] = {}
        if index is not None and keys:
            try:
                found = self._select(index, keys)
            except (AttributeError, TypeError, ValueError, sqlite3.Error):
                found = {k: r for k in keys if (r := self._read("result:" + k)) is not None}
        local = {
            key: record
            for key, record in found.items()
            if all(
                self.blob_path(out["file"]).is_file()
                for out in record.get("outputs", {}).values()
                if "file" in out
            )
        }
        if remote and self.remote is not None and len(local) < len(set(keys)):
            local.update(self.remote.pull([k for k in keys if k not in local]))
        return local

    @staticmethod
    def _select(index: Any, keys: list[str]) -> dict[str, dict[str, Any]]:
        disk = index._disk  # private: no public batch read (see get_results)
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

    def put_result(self, key: str, record: dict[str, Any], *, push: bool = True) -> None:
        """Store ``record`` under ``key``; its blobs must already be stored.

        With a remote cache attached, the result is then pushed in the background (when its
        policy shares it); ``push=False`` for what came from the remote (no echo).
        """
        self._write("result:" + key, record)
        if push and self.remote is not None:
            self.remote.push_later(key, record)

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
        with writing(self.root, "store a file in the cache"):
            if final.is_file():
                tmp.unlink()
                return final
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.chmod(_READ_ONLY)
            tmp.replace(final)
        return final

    def commit_blob(self, tmp: Path, digest: str) -> Path:
        """Move ``tmp`` (a file in this cache's ``tmp/``, whose blake3 ``digest`` the caller
        has just verified) into ``blobs/``, read-only; returns where it went.

        An existing blob of that digest is kept (and ``tmp`` removed).
        """
        return self._commit(tmp, digest)

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
            with (
                src.open("rb") as fin,
                writing(self.root, "store a file in the cache"),
                tmp.open("wb") as fout,
            ):
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
    def workdir(self, *, create: bool = True) -> Iterator[Path]:
        """An empty private folder under ``tmp/`` for a running stage, removed afterwards.

        ``create=False`` names a fresh folder without making it, for a stage that says it
        writes no files (see ``needs_workdir`` in ``stages/base.py``): a write there fails.
        """
        self._ensure_dirs()
        if not create:
            path = self.root / "tmp" / f"work-{uuid.uuid4().hex}"
        else:
            with writing(self.root, "make a work folder in the cache"):
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
