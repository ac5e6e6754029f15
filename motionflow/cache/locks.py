"""Per-key locks in the cache directory, so two processes never compute one key at once."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

__all__ = ["key_lock"]

_POLL = 0.05


def _open_lock(root: Path, path: Path) -> int:
    """An fd on the lock file ``path`` (created), or the located read-only/full-disk error."""
    from motionflow.cache.store import writing

    with writing(root, f"take the lock {path.name[:12]} in the cache"):
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # no locks/ yet: made once, not checked before every lock
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


@contextlib.asynccontextmanager
async def key_lock(root: Path, key: str) -> AsyncIterator[None]:
    """Hold an exclusive lock on ``key`` across processes sharing the cache at ``root``.

    The lock is an ``flock`` on ``locks/<key>``, released by the kernel if the process dies,
    so a crash never leaves a stale lock behind. Waiting polls without blocking the event loop.
    """
    path = root / "locks" / key
    fd = _open_lock(root, path)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(_POLL)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
