"""Reading a small file the user named (a recipe, a plan file, a price table), bounded.

Only a regular file of at most ``cap`` bytes is read: ``/dev/zero`` never ends, a FIFO blocks
until someone writes to it, and a huge file fills memory. The file is opened non-blocking and
checked again after opening, so a path swapped for a FIFO after the first check cannot hang the
read either; at most ``cap + 1`` bytes are read, in case the file grows meanwhile.

Each caller words its own error (a recipe error is located, a plan error says nothing was
run); :class:`UnreadableError` carries the reason, phrased to follow "cannot read it: ".
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["NOT_REGULAR", "UnreadableError", "read_bounded", "size_text"]

NOT_REGULAR = "it is not a regular file (a device, FIFO or folder?)"


class UnreadableError(Exception):
    """The file cannot be read as a small regular file; ``reason`` says why."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = missing


def size_text(cap: int) -> str:
    """``cap`` for a message: ``"1 MiB (1,048,576 bytes)"``."""
    return f"{cap >> 20} MiB ({cap:,} bytes)" if cap >= 1 << 20 else f"{cap:,} bytes"


def read_bounded(path: Path, cap: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``cap`` bytes.

    Raises:
        UnreadableError: the file is missing (``missing`` is set), not a regular file, larger than
            ``cap``, or cannot be opened (permissions, a NUL in the path, a symlink loop, a
            name too long).
    """
    big = f"it is larger than {size_text(cap)}"
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableError(NOT_REGULAR)
        if info.st_size > cap:
            raise UnreadableError(big)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UnreadableError(NOT_REGULAR)
            data = handle.read(cap + 1)
    except FileNotFoundError as exc:
        raise UnreadableError("it does not exist", missing=True) from exc
    except OSError as exc:  # permissions, ELOOP, ENAMETOOLONG, EISDIR, ...
        raise UnreadableError(exc.strerror or str(exc)) from exc
    except ValueError as exc:  # a NUL in the path
        raise UnreadableError(f"the path is not usable ({exc})") from exc
    if len(data) > cap:
        raise UnreadableError(big)
    return data
