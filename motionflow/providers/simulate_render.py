"""Render the simulator's stand-in for a Kling motion-control video with ffmpeg."""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from pathlib import Path

from motionflow.errors import StageError
from motionflow.media.ffmpeg import escape_filter_value, ffmpeg_path, run_ffmpeg
from motionflow.media.fonts import find_font
from motionflow.media.probe import probe

__all__ = ["MODE_SIZES", "SIMULATED_FPS", "render_simulated_video"]

MODE_SIZES: dict[str, tuple[int, int]] = {"std": (1280, 720), "pro": (1920, 1080)}
"""Output (width, height) per mode: what the real model returns (720p / 1080p)."""

SIMULATED_FPS = 24
"""Frame rate of simulated videos."""


async def render_simulated_video(
    *,
    image: Path,
    video: Path,
    dest: Path,
    mode: str,
    seconds: float,
    keep_original_sound: bool,
    label: str,
) -> None:
    """Write a labelled, simulated motion-control video to ``dest``.

    The reference video fills the frame as the background; the character image, scaled to
    about 60% of the height, is overlaid and sways with time; a "SIMULATED · label" banner
    sits in the top-left corner. The result is H.264/yuv420p at 24 fps with ``+faststart``,
    sized for ``mode``, exactly ``seconds`` long (the reference loops if it is shorter). It is
    written to a temporary file in ``dest``'s directory and renamed, so ``dest`` is either
    complete or absent.

    Args:
        image: the character image.
        video: the reference (motion) video.
        dest: the ``.mp4`` file to write; replaced if it exists.
        mode: ``"std"`` (1280x720) or ``"pro"`` (1920x1080).
        seconds: the output duration in seconds, greater than zero.
        keep_original_sound: copy the reference's audio (when it has any) into the output.
        label: shown after "SIMULATED ·" in the banner, e.g. the job id or variant.

    Raises:
        StageError: ``mode`` or ``seconds`` is invalid.
        MediaError: an input cannot be read, or ffmpeg fails.
        ToolNotFoundError: no ffmpeg binary can be found.
    """
    if mode not in MODE_SIZES:
        msg = f"cannot simulate mode {mode!r}: it must be one of {sorted(MODE_SIZES)}."
        raise StageError(msg)
    if not (math.isfinite(seconds) and seconds > 0):
        msg = f"cannot simulate a video of {seconds!r} seconds: the duration must be above 0."
        raise StageError(msg)
    # Probing first turns a bad input into a clear MediaError instead of ffmpeg's stderr.
    await asyncio.to_thread(probe, image)
    ref = await asyncio.to_thread(probe, video)
    with_audio = keep_original_sound and ref.has_audio
    font = find_font()

    width, height = MODE_SIZES[mode]
    graph = _filter_graph(width, height, label=label, font=font)
    # A unique hidden sibling (not mkstemp: ffmpeg creates it, so the usual umask applies).
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part.mp4")
    args = [
        # Input 0: the still image, repeated as a 24 fps stream.
        *("-loop", "1", "-framerate", str(SIMULATED_FPS), "-i", ffmpeg_path(image)),
        # Input 1: the reference, looped so a short clip still covers ``seconds``.
        *("-stream_loop", "-1", "-i", ffmpeg_path(video)),
        *("-filter_complex", graph, "-map", "[out]"),
        *(("-map", "1:a:0", "-c:a", "aac", "-b:a", "128k") if with_audio else ("-an",)),
        *("-c:v", "libx264", "-preset", "ultrafast", "-crf", "26", "-pix_fmt", "yuv420p"),
        *("-r", str(SIMULATED_FPS), "-t", f"{seconds:.6f}"),
        *("-movflags", "+faststart", "-map_metadata", "-1", "-f", "mp4", ffmpeg_path(tmp)),
    ]
    try:
        await run_ffmpeg(args, what=f"render the simulated video {str(dest)!r}")
        tmp.replace(dest)
    finally:
        # Covers failures and cancellation alike: no partial file is ever left behind.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _filter_graph(width: int, height: int, *, label: str, font: str | None) -> str:
    fg_height = round(height * 0.6)
    sway = round(width * 0.06)
    bob = round(height * 0.02)
    margin = round(height * 0.03)
    bg = (
        f"[1:v]fps={SIMULATED_FPS},"
        f"scale={width}:{height}:force_original_aspect_ratio=increase,"
        f"crop={width}:{height},setsar=1,eq=brightness=-0.08[bg]"
    )
    fg = f"[0:v]scale=-2:{fg_height},format=rgba[fg]"
    # Sway left/right every 3 s and bob twice a second: the character visibly "moves".
    overlay = (
        f"[bg][fg]overlay=x='(W-w)/2+{sway}*sin(2*PI*t/3)'"
        f":y='H-h-{margin}-{bob}*abs(sin(2*PI*t))':shortest=0:format=auto"
    )
    font_size = round(height / 22)
    if font is None:
        # No font anywhere: a coloured banner still marks the video as simulated.
        banner = (
            f"drawbox=x={margin}:y={margin}:w={round(width * 0.3)}:h={font_size * 2}"
            ":color=0xE0115F@0.9:t=fill"
        )
    else:
        text = escape_filter_value(f"SIMULATED · {label}")
        banner = (
            f"drawtext=fontfile={escape_filter_value(font)}:text={text}:expansion=none"
            f":x={margin}:y={margin}:fontsize={font_size}:fontcolor=white"
            f":box=1:boxcolor=0xE0115F@0.9:boxborderw={round(font_size / 2)}"
        )
    return f"{bg};{fg};{overlay},{banner},format=yuv420p[out]"
