"""The fake server's stand-in output when rendering is off: a tiny, real, labelled video.

A client checks that what it downloads is a video before storing it as a paid result, so even
the fast test mode serves one: 32x32 pixels, one second, made once per process with ffmpeg,
its container title saying what it is.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from functools import cache
from pathlib import Path

__all__ = ["LABEL", "placeholder_video"]

LABEL = "motionflow fake EmpirioLabs output (render=False)"
"""The title in the placeholder's metadata."""

_lock = threading.Lock()


@cache
def _make() -> bytes:
    from motionflow.media.ffmpeg import find_ffmpeg

    with tempfile.TemporaryDirectory(prefix="motionflow-placeholder-") as tmp:
        out = Path(tmp) / "placeholder.mp4"
        args = [
            find_ffmpeg(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:s=32x32:r=24:d=1",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-metadata",
            f"title={LABEL}",
            "-movflags",
            "+faststart",
            str(out),
        ]
        subprocess.run(args, check=True, capture_output=True, timeout=60)
        return out.read_bytes()


def placeholder_video() -> bytes:
    """The placeholder's bytes (the same for every job of this process)."""
    with _lock:
        return _make()
