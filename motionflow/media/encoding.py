"""Small helpers shared by the ffmpeg stages: even sizes, times, rotation, probing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from motionflow.errors import MediaError
from motionflow.media.probe import MediaInfo, probe
from motionflow.media.rules import StreamDetails, Violation, stream_details

__all__ = ["BITEXACT", "even", "probe_both", "raise_violations", "rotation_filters", "seconds"]

BITEXACT = ["-fflags", "+bitexact"]
"""Reproducible container bytes: the same input and ffmpeg give the same output."""


def even(value: float) -> int:
    """The nearest even integer of at least 2 (yuv420p needs even sides); halves round up."""
    return max(2, int(value / 2 + 0.5) * 2)


def rotation_filters(rotation: int) -> list[str]:
    """Filters that apply a counter-clockwise display rotation (as ffmpeg's autorotate does)."""
    return {90: ["transpose=cclock"], 180: ["hflip", "vflip"], 270: ["transpose=clock"]}.get(
        rotation, []
    )


async def probe_both(path: Path) -> tuple[MediaInfo, StreamDetails]:
    info = await asyncio.to_thread(probe, path)
    details = await asyncio.to_thread(stream_details, path)
    return info, details


def raise_violations(what: str, found: list[Violation]) -> None:
    if found:
        lines = "\n".join(f"  - {v.message()}" for v in found)
        msg = (
            f"{what} still breaks the media rules (a motionflow bug; please report it with "
            f"the source file):\n{lines}"
        )
        raise MediaError(msg)


def seconds(value: float) -> str:
    """A time for ffmpeg's command line, to the microsecond."""
    return f"{value:.6f}"
