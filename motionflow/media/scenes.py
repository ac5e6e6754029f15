"""Scene cuts in a clip (ffmpeg's scene score) and the longest continuous shot between them."""

from __future__ import annotations

import re
import tempfile
from itertools import pairwise
from pathlib import Path

from motionflow.media.ffmpeg import escape_filter_value, ffmpeg_path, run_ffmpeg

__all__ = ["longest_clean_span", "scene_cuts"]

# Scores are computed on small frames: as good for finding cuts, and several times faster.
_ANALYSIS_WIDTH = 320
_PTS_TIME = re.compile(r"\bpts_time:\s*(-?[0-9.]+(?:e-?[0-9]+)?)")


async def scene_cuts(path: Path, threshold: float = 0.3) -> list[float]:
    """Find the times where a clip cuts to another shot.

    Runs ffmpeg's ``select='gt(scene,T)'`` over the video stream and prints the selected
    frames' times with the ``metadata`` filter into a temporary file.

    Args:
        path: the video file.
        threshold: scene-change score between 0 and 1 above which a frame starts a new shot;
            0.3 finds hard cuts and ignores fast motion, lower values find softer transitions.

    Returns:
        The cut times in seconds from the start of the file, ascending.

    Raises:
        ValueError: ``threshold`` is not strictly between 0 and 1.
        MediaError: ffmpeg cannot decode the file.
    """
    if not 0.0 < threshold < 1.0:
        msg = f"scene threshold must be between 0 and 1 (exclusive), not {threshold!r}"
        raise ValueError(msg)
    with tempfile.TemporaryDirectory(prefix="motionflow-scenes-") as tmp:
        report = Path(tmp) / "cuts.txt"
        graph = (
            f"scale=w={_ANALYSIS_WIDTH}:h=-2,"
            f"select='gt(scene,{threshold:g})',"
            f"metadata=mode=print:file={escape_filter_value(str(report))}"
        )
        args = ["-i", ffmpeg_path(path), "-map", "0:V:0", "-an", "-sn", "-dn"]
        await run_ffmpeg(
            [*args, "-vf", graph, "-f", "null", "-"],
            what=f"find scene cuts in {str(path)!r}",
        )
        text = report.read_text(encoding="utf-8") if report.exists() else ""
    times = sorted({round(float(m.group(1)), 6) for m in _PTS_TIME.finditer(text)})
    return [t for t in times if t > 0.0]


def longest_clean_span(cuts: list[float], duration: float) -> tuple[float, float]:
    """Return the longest stretch of ``[0, duration]`` that no cut interrupts.

    Args:
        cuts: cut times in seconds, in any order; those outside ``(0, duration)`` are ignored.
        duration: the clip's length in seconds.

    Returns:
        ``(start, end)`` of the longest shot; the earliest one when several are as long;
        ``(0.0, 0.0)`` for a clip of no length.
    """
    if duration <= 0:
        return (0.0, 0.0)
    bounds = [0.0, *sorted(t for t in set(cuts) if 0.0 < t < duration), duration]
    best = (bounds[0], bounds[1])
    for start, end in pairwise(bounds):
        if end - start > best[1] - best[0]:
            best = (start, end)
    return best
