"""Find the ffmpeg binary, read its version, and run it as a cancellable subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from motionflow.errors import MediaError, ToolNotFoundError

__all__ = [
    "ENV_FFMPEG",
    "escape_filter_value",
    "ffmpeg_path",
    "ffmpeg_version",
    "find_ffmpeg",
    "run_ffmpeg",
]

ENV_FFMPEG = "MOTIONFLOW_FFMPEG"
"""Environment variable naming the ffmpeg binary to use before PATH and imageio-ffmpeg."""

_STDERR_TAIL_LINES = 15
_VERSION_TIMEOUT_S = 30.0
_FIX_BINARY = (
    f"Fix: set {ENV_FFMPEG} to a working ffmpeg binary, install ffmpeg on PATH, "
    "or `pip install imageio-ffmpeg`."
)

# (path, st_mtime_ns, st_size) -> first line of ``ffmpeg -version``.
_version_memo: dict[tuple[str, int, int], str] = {}


def find_ffmpeg() -> str:
    """Return the path of the ffmpeg binary to run.

    The lookup order is ``$MOTIONFLOW_FFMPEG``, then ``ffmpeg`` on ``PATH``, then the binary
    shipped by ``imageio-ffmpeg``. The answer is memoised per value of the environment variable.

    Returns:
        The path (or PATH-resolved name) of an executable ffmpeg.

    Raises:
        ToolNotFoundError: ``$MOTIONFLOW_FFMPEG`` names something that is not an executable
            file, or no ffmpeg can be found at all.
    """
    return _resolve_ffmpeg(os.environ.get(ENV_FFMPEG) or None)


@functools.lru_cache(maxsize=8)
def _resolve_ffmpeg(env_value: str | None) -> str:
    if env_value is not None:
        return _check_env_binary(env_value)
    on_path = shutil.which("ffmpeg")
    if on_path is not None:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        msg = (
            "ffmpeg was not found: it is not on PATH and the 'imageio-ffmpeg' package is not "
            f"installed. Fix: `pip install imageio-ffmpeg`, install ffmpeg on PATH, or set "
            f"{ENV_FFMPEG} to the path of an ffmpeg binary."
        )
        raise ToolNotFoundError(msg) from exc
    try:
        exe = str(imageio_ffmpeg.get_ffmpeg_exe())
    except (RuntimeError, OSError) as exc:
        msg = (
            "ffmpeg was not found: it is not on PATH and imageio-ffmpeg has no usable binary "
            f"for this platform ({exc}). Fix: `pip install --force-reinstall imageio-ffmpeg`, "
            f"install ffmpeg on PATH, or set {ENV_FFMPEG} to the path of an ffmpeg binary."
        )
        raise ToolNotFoundError(msg) from exc
    return exe


def _check_env_binary(value: str) -> str:
    # A bare name ("ffmpeg7") is looked up on PATH, like a shell would.
    candidate = value if os.sep in value else (shutil.which(value) or value)
    path = Path(candidate)
    if not path.is_file():
        why = "does not exist" if not path.exists() else "is not a file"
    elif not os.access(path, os.X_OK):
        why = "is not executable"
    else:
        return candidate
    msg = (
        f"{ENV_FFMPEG}={value!r} {why}. Fix: point {ENV_FFMPEG} at an executable ffmpeg "
        "binary, or unset it to use ffmpeg from PATH or from imageio-ffmpeg."
    )
    raise ToolNotFoundError(msg)


def ffmpeg_version(binary: str) -> str:
    """Return the first line of ``binary -version``, e.g. ``"ffmpeg version 7.1 Copyright ..."``.

    Media stages put this into their cache keys, so it is memoised on the binary's
    ``(path, mtime_ns, size)``: replacing the binary invalidates the memo, re-running does not.

    Args:
        binary: path of the ffmpeg binary, usually from :func:`find_ffmpeg`.

    Returns:
        The version line, stripped of surrounding whitespace.

    Raises:
        ToolNotFoundError: the binary cannot be run or does not print a version.
    """
    try:
        st = Path(binary).stat()
    except OSError as exc:
        msg = f"cannot read the ffmpeg binary {binary!r}: {exc.strerror or exc}. {_FIX_BINARY}"
        raise ToolNotFoundError(msg) from exc
    memo_key = (binary, st.st_mtime_ns, st.st_size)
    cached = _version_memo.get(memo_key)
    if cached is not None:
        return cached
    try:
        done = subprocess.run(
            [binary, "-version"],
            capture_output=True,
            check=False,
            timeout=_VERSION_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        msg = f"cannot run the ffmpeg binary {binary!r} to read its version: {exc}. {_FIX_BINARY}"
        raise ToolNotFoundError(msg) from exc
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = _tail(done.stderr)
        msg = (
            f"{binary!r} -version exited with code {done.returncode} and printed no version; "
            f"it is probably not ffmpeg. {_FIX_BINARY}"
            + (f"\nffmpeg said:\n{tail}" if tail else "")
        )
        raise ToolNotFoundError(msg)
    version = lines[0].strip()
    _version_memo[memo_key] = version
    return version


async def run_ffmpeg(args: list[str], *, what: str) -> None:
    """Run ffmpeg with ``-hide_banner -nostdin -y`` and ``args``; no shell is involved.

    If the awaiting task is cancelled, the ffmpeg process is killed and reaped before the
    cancellation propagates, so no orphan ffmpeg keeps writing files.

    Args:
        args: the arguments after the binary, e.g. ``["-i", "in.mp4", "out.mp4"]``.
        what: a short description of the job for error messages, e.g. ``"trim 'clip.mp4'"``.

    Raises:
        ToolNotFoundError: no ffmpeg binary can be found or started.
        MediaError: ffmpeg exited with a non-zero code; the message carries the end of its
            stderr.
    """
    binary = find_ffmpeg()
    argv = [binary, "-hide_banner", "-nostdin", "-y", *args]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        msg = f"cannot start ffmpeg {binary!r} to {what}: {exc.strerror or exc}. {_FIX_BINARY}"
        raise ToolNotFoundError(msg) from exc
    try:
        _, stderr = await proc.communicate()
    except BaseException:
        # Cancelled (or interrupted): never leave ffmpeg running behind us.
        await _kill(proc)
        raise
    if proc.returncode != 0:
        tail = _tail(stderr)
        msg = (
            f"ffmpeg failed to {what} (exit code {proc.returncode}).\n"
            f"command: {shlex.join(argv)}\n"
            f"last lines of ffmpeg's output:\n{tail or '(nothing)'}\n"
            "Fix: check that the input files are readable media; run the command above to "
            "see the full output."
        )
        raise MediaError(msg)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    # Reap it even if we are being cancelled again, so no zombie is left.
    await asyncio.shield(proc.wait())


def _tail(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").replace("\r", "\n")
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-_STDERR_TAIL_LINES:])


def ffmpeg_path(path: Path) -> str:
    """Return ``path`` as an ffmpeg input/output argument that names exactly that file.

    The path is made absolute, so ffmpeg never reads ``take:1.mp4`` as a ``take:`` protocol URL
    or ``-x.mp4`` as an option.

    Args:
        path: a local file path.

    Returns:
        The absolute path as a string.
    """
    return str(path.absolute())


def escape_filter_value(value: str) -> str:
    """Escape ``value`` for use as an option value inside an ffmpeg filter graph.

    ffmpeg reads a graph at two levels, each with ``av_get_token``: the graph (``[],;`` split
    filters and links) and then the filter's options (``:`` splits them). Each level takes
    ``\\`` and ``'`` as escapes and drops unescaped whitespace at either end of a token, so the
    value is escaped once per level, leading and trailing whitespace included. This is the one
    place filter values are escaped; ``tests/test_filter_escaping.py`` runs hostile values
    through the real ffmpeg and checks what it received.

    Args:
        value: the raw value, e.g. a drawtext ``text`` (with ``expansion=none``) or a file path.

    Returns:
        The escaped value, safe to put after ``key=`` in a ``-vf`` or ``-filter_complex`` graph.
    """
    return _escape_level(_escape_level(value, _OPTION_SPECIALS), _GRAPH_SPECIALS)


_OPTION_SPECIALS = frozenset("\\':")
_GRAPH_SPECIALS = frozenset("\\'[],;")
_WHITESPACE = " \t\n\r"


def _escape_level(value: str, specials: frozenset[str]) -> str:
    first = len(value) - len(value.lstrip(_WHITESPACE))
    end = len(value.rstrip(_WHITESPACE))
    return "".join(
        "\\" + ch if ch in specials or (ch in _WHITESPACE and not first <= i < end) else ch
        for i, ch in enumerate(value)
    )
