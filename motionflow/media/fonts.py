"""Find a TrueType font for ffmpeg's drawtext: ``$MOTIONFLOW_FONT``, common paths, fontconfig."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from motionflow.errors import UsageError

__all__ = ["ENV_FONT", "FONT_CANDIDATES", "NO_FONT", "find_font"]

ENV_FONT = "MOTIONFLOW_FONT"
"""Environment variable naming the font file for captions, or ``none`` to draw no text."""

NO_FONT = "none"
"""The value of ``$MOTIONFLOW_FONT`` that turns text off (captions become coloured bars)."""

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
)
"""Font files tried, in order, before asking fontconfig."""

_FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
_FC_MATCH_TIMEOUT_S = 10.0


def find_font() -> str | None:
    """Return the path of a font file for drawtext, or None when there is none.

    The lookup order is ``$MOTIONFLOW_FONT`` (``none`` means no font), then
    :data:`FONT_CANDIDATES`, then ``fc-match sans:bold``. The answer is memoised per value of
    the environment variable. Callers draw a text-less marker when this returns None rather
    than fail: a caption is a convenience, not a reason to stop a run.

    Returns:
        A path to an existing ``.ttf``/``.otf``/``.ttc`` file, or None.

    Raises:
        UsageError: ``$MOTIONFLOW_FONT`` names something that is not a font file.
    """
    return _resolve_font(os.environ.get(ENV_FONT) or None)


@functools.lru_cache(maxsize=8)
def _resolve_font(env_value: str | None) -> str | None:
    if env_value is not None:
        return _check_env_font(env_value)
    found = next((p for p in FONT_CANDIDATES if Path(p).is_file()), None)
    return found if found is not None else _fc_match()


def _check_env_font(value: str) -> str | None:
    if value.strip().lower() == NO_FONT:
        return None
    path = Path(value)
    if path.is_file() and path.suffix.lower() in _FONT_SUFFIXES:
        return value
    why = "does not exist" if not path.exists() else "is not a .ttf, .otf or .ttc file"
    msg = (
        f"{ENV_FONT}={value!r} {why}. Fix: point {ENV_FONT} at a font file (e.g. "
        f"DejaVuSans.ttf), set it to {NO_FONT!r} to draw captions without text, or unset it "
        "to use a system font."
    )
    raise UsageError(msg)


def _fc_match() -> str | None:
    binary = shutil.which("fc-match")
    if binary is None:
        return None  # no fontconfig: callers fall back to text-less markers
    try:
        done = subprocess.run(
            [binary, "--format=%{file}", "sans:bold"],
            capture_output=True,
            check=False,
            timeout=_FC_MATCH_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None  # a broken or hung fontconfig is no reason to fail a run
    path = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode == 0 and path.lower().endswith(_FONT_SUFFIXES) and Path(path).is_file():
        return path
    return None
