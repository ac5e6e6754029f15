"""Recognising, by their first bytes, formats that need special handling (SVG, animated WebP)
and files that are not media at all (text, an HTML page, a Git LFS pointer, nothing)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["SVG_FIX", "is_animated_webp", "is_svg", "not_media"]

SVG_FIX = (
    "SVG is not supported (ffmpeg cannot draw vector images). Fix: convert it to PNG, e.g. "
    "`rsvg-convert -w 1024 -o hero.png hero.svg` or `inkscape hero.svg -o hero.png`, and "
    "use the PNG"
)
"""What to do about an SVG input; messages append it after naming the file."""

_HEAD = 4096


def _head(path: Path) -> bytes:
    """The first bytes of a regular file; empty for anything else (never blocks on a FIFO)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return b""
            return os.read(fd, _HEAD)
        finally:
            os.close(fd)
    return b""


def is_svg(path: Path) -> bool:
    """True when ``path`` holds an SVG drawing (plain or gzipped ``.svgz``)."""
    head = _head(path)
    if head[:2] == b"\x1f\x8b":  # gzip: svgz only by name, nothing else is ever gzipped here
        return path.suffix.lower() == ".svgz"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not text.startswith((b"<?xml", b"<svg", b"<!doctype svg", b"<!--")):
        return False
    return b"<svg" in text


def is_animated_webp(path: Path) -> bool:
    """True when ``path`` is a WebP with an animation (``VP8X`` header with the ANIM flag)."""
    head = _head(path)
    if len(head) < 21 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return False
    return head[12:16] == b"VP8X" and bool(head[20] & 0x02)


def not_media(path: Path) -> str | None:
    """Why ``path`` is certainly not an image or a video, or None when it may be one.

    Only the certain cases are named: an empty file, and a file whose first bytes are text
    (an HTML page saved under a video's name, a Git LFS pointer that was never pulled, notes).
    Binary data of any kind is left for ffmpeg to judge. Not a regular file: None (the
    caller's own checks say what it is).
    """
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None
    except (OSError, ValueError):
        return None
    head = _head(path)
    if not head:
        return "it is empty (0 bytes)"
    if b"\0" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the head
            return None
        text = head[: exc.start].decode("utf-8")
    if text.startswith("version https://git-lfs.github.com/spec/"):
        return "it is a Git LFS pointer, not the file itself. Fix: run `git lfs pull`"
    if any(ord(c) < 32 and c not in "\t\r\n\f" for c in text):
        return None
    lowered = text.lstrip().lower()
    if lowered.startswith(("<!doctype html", "<html")):
        return "it is an HTML page, not media (a download that saved an error or login page?)"
    return "it holds text, not media"
