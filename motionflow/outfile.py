"""Where motionflow writes a file the user named (``plan -o``, ``schema -o``, ``cache export``).

A named output is replaced atomically (a temp file beside it, then a rename) only when it is a
regular file or does not exist yet: a rename over ``/dev/full`` or a FIFO would replace the
device node with a plain file (as root, for every program on the machine). ``/dev/null`` is
written to as it is, so ``-o /dev/null`` discards the output as users expect; anything else that
is not a regular file is refused.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from pathlib import Path

from motionflow.errors import UsageError

__all__ = ["DEV_NULL", "atomic_copy", "atomic_write_text", "out_write_error", "output_kind"]

DEV_NULL = Path(os.devnull)


def output_kind(path: Path, what: str) -> str:
    """``"discard"`` for the null device, ``"file"`` for a regular file or a new path.

    Raises:
        UsageError: ``path`` exists and is a device, FIFO, socket or folder (``what`` names the
            output in the message, e.g. ``"the plan file"``).
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return "file"
    except OSError as exc:
        msg = f"cannot write {what} to {str(path)!r}: {exc}; choose a writable path"
        raise UsageError(msg) from exc
    if stat.S_ISREG(info.st_mode):
        return "file"
    try:
        null = DEV_NULL.stat()
    except OSError:  # pragma: no cover - every POSIX system has one
        null = None
    if null is not None and (info.st_dev, info.st_ino) == (null.st_dev, null.st_ino):
        return "discard"
    msg = (
        f"cannot write {what} to {str(path)!r}: it is not a regular file (a device, FIFO or "
        "folder), and motionflow never replaces one; give a file path, or - for standard output"
    )
    raise UsageError(msg)


def out_write_error(folder: Path, exc: OSError, what: str, *, kept: str = "") -> UsageError:
    """``exc``, met while writing ``what`` under ``folder`` (``out/<recipe>``), as exit 2.

    Names the folder, the cause (``no space left`` for ENOSPC, ``read-only``) and the fix;
    ``kept`` adds what is safe all the same (the run's results, in the cache).
    """
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause, fix = "no space left on the disk holding it", "free some space"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        cause = "it is read-only"
        fix = f"make it writable (e.g. `chmod -R u+w {folder}`, or remount its disk read-write)"
    else:
        cause, fix = exc.strerror or type(exc).__name__, "fix that"
    where = f" ({exc.filename})" if exc.filename else ""
    msg = (
        f"cannot write {what} in {str(folder)!r}: {cause}{where}; {fix}, then run the same "
        f"command again{kept}. No partial file was left"
    )
    return UsageError(msg)


def atomic_copy(src: Path, dest: Path, *, mode: int | None = None) -> None:
    """Copy ``src`` to a temp file beside ``dest`` (optionally ``chmod`` it), then rename.

    A reader of ``dest`` (a player, a web server, the service fetching a URL) never sees half
    a file. The folder must exist.
    """
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        shutil.copyfile(src, tmp)
        if mode is not None:
            tmp.chmod(mode)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str, *, make_parent: bool = True) -> None:
    """Write ``text`` (UTF-8) to a temp file beside ``path`` and rename it into place.

    ``make_parent=False`` when the caller made the folder (saves a ``mkdir`` per file).
    """
    if make_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
