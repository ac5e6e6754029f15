"""The gallery's own media in ``out/<recipe>/.report/``: posters and reference clips."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from motionflow.media.ffmpeg import ffmpeg_path, run_ffmpeg
from motionflow.outfile import atomic_copy

__all__ = ["REPORT_DIR", "copy_media", "copy_reference", "make_poster", "remove_stale"]

REPORT_DIR = ".report"
_POSTER_WIDTH = 480


def _hex(digest: str) -> str:
    return digest.removeprefix("blake3:")[:24]


async def make_poster(out_dir: Path, video: str, digest: str, limit: asyncio.Semaphore) -> str:
    """Make (once per digest) a JPEG of the first frame of ``video``; returns its relative path.

    Raises:
        MediaError: ffmpeg could not read the video.
        ToolNotFoundError: no ffmpeg.
    """
    rel = f"{REPORT_DIR}/poster-{_hex(digest)}.jpg"
    dest = out_dir / rel
    if dest.is_file():
        return rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    args = [
        *("-i", ffmpeg_path(out_dir / video), "-map", "0:v:0", "-frames:v", "1"),
        *("-vf", f"scale={_POSTER_WIDTH}:-2", "-c:v", "mjpeg", "-q:v", "4"),
        *("-an", "-sn", "-dn", "-f", "image2", "-update", "1", ffmpeg_path(tmp)),
    ]
    try:
        async with limit:
            await run_ffmpeg(args, what=f"make a poster frame of {video!r}")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return rel


def copy_reference(out_dir: Path, src: Path, digest: str) -> str | None:
    """Copy the reference clip ``digest`` (the cache blob ``src``) beside the gallery, once.

    Returns:
        Its path relative to ``out_dir``, or None when the cache no longer holds it.
    """
    return _copy(out_dir, src, f"{REPORT_DIR}/reference-{_hex(digest)}.mp4")


def copy_media(out_dir: Path, src: Path, digest: str, ext: str = ".mp4") -> str | None:
    """Copy a result of an earlier run (the cache blob ``src``) beside the gallery, once.

    Returns:
        Its path relative to ``out_dir``, or None when the cache no longer holds it.
    """
    return _copy(out_dir, src, f"{REPORT_DIR}/media-{_hex(digest)}{ext}")


def _copy(out_dir: Path, src: Path, rel: str) -> str | None:
    dest = out_dir / rel
    if dest.is_file():
        return rel
    if not src.is_file():
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a copy, not a link: cache blobs are read-only and may be collected later
    atomic_copy(src, dest)
    return rel


def remove_stale(out_dir: Path, used: set[str]) -> list[Path]:
    """Delete posters, clips and copies in ``.report/`` that the gallery no longer shows."""
    removed: list[Path] = []
    folder = out_dir / REPORT_DIR
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        rel = f"{REPORT_DIR}/{path.name}"
        if path.name.startswith(("poster-", "reference-", "media-")) and rel not in used:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
