"""Render the simulator's stand-in for a Kling motion-control video with ffmpeg."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import secrets
import textwrap
from pathlib import Path

from motionflow.errors import StageError
from motionflow.media.ffmpeg import escape_filter_value, ffmpeg_path, run_ffmpeg
from motionflow.media.fonts import find_font
from motionflow.media.probe import probe

__all__ = ["MODE_SIZES", "PROMPT_LINES", "SIMULATED_FPS", "render_simulated_video", "wrap_prompt"]

MODE_SIZES: dict[str, tuple[int, int]] = {"std": (1280, 720), "pro": (1920, 1080)}
"""Output (width, height) per mode: what the real model returns (720p / 1080p)."""

SIMULATED_FPS = 24
"""Frame rate of simulated videos."""

PROMPT_LINES = 3
"""At most this many lines of the prompt are drawn; a longer prompt ends with "…"."""

_CHAR_WIDTH = 0.6  # a sans-serif glyph is at most about 0.6 em wide on average
# Without a font: one bar colour per variant (picked by a digest of what the request asked).
_BAR_COLOURS = ("0x1F6FEB", "0x2DA44E", "0xBF8700", "0x8250DF", "0x1B7C83", "0xFB8F44")


def wrap_prompt(prompt: str, columns: int, lines: int = PROMPT_LINES) -> list[str]:
    """Split ``prompt`` into at most ``lines`` lines of at most ``columns`` characters.

    Whitespace (newlines, tabs) is folded to single spaces and control characters dropped; a
    prompt that does not fit ends with "…".
    """
    clean = "".join(ch if ch.isprintable() else " " for ch in prompt)
    wrapped = textwrap.wrap(clean, width=max(8, columns), break_long_words=True)
    if len(wrapped) <= lines:
        return wrapped
    kept = wrapped[:lines]
    kept[-1] = kept[-1][: max(1, columns - 1)].rstrip() + "…"
    return kept


async def render_simulated_video(
    *,
    image: Path,
    video: Path,
    dest: Path,
    mode: str,
    seconds: float,
    keep_original_sound: bool,
    label: str,
    prompt: str = "",
    details: str | None = None,
) -> None:
    """Write a labelled, simulated motion-control video to ``dest``.

    The reference video fills the frame as the background; the character image, scaled to
    about 60% of the height, is overlaid and sways with time; a "SIMULATED · label" banner
    sits in the top-left corner. Below it, what tells the variants of a sweep apart: a
    ``details`` line (by default the mode, size and duration) and the prompt, wrapped to at most
    :data:`PROMPT_LINES` lines and cut with "…". Without a font (``MOTIONFLOW_FONT=none``), a
    pink bar marks the video as simulated and a second bar, whose colour and length come from
    the details and the prompt, tells variants apart. The result is H.264/yuv420p at 24 fps
    with ``+faststart``, sized for ``mode``, exactly ``seconds`` long (the reference loops if it
    is shorter). It is written to a temporary file in ``dest``'s directory and renamed, so
    ``dest`` is either complete or absent.

    Args:
        image: the character image.
        video: the reference (motion) video.
        dest: the ``.mp4`` file to write; replaced if it exists.
        mode: ``"std"`` (1280x720) or ``"pro"`` (1920x1080).
        seconds: the output duration in seconds, greater than zero.
        keep_original_sound: copy the reference's audio (when it has any) into the output.
        label: shown after "SIMULATED ·" in the banner, e.g. the job id or variant.
        prompt: the rendered prompt, written under the banner.
        details: one line under the banner; None: ``"std · 1280x720 · 3 s"``.

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
    if details is None:
        details = f"{mode} · {width}x{height} · {seconds:g} s"
    graph = _filter_graph(width, height, label=label, font=font, details=details, prompt=prompt)
    # A unique hidden sibling (not mkstemp: ffmpeg creates it, so the usual umask applies).
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part.mp4")
    args = [
        # Input 0: the still image, read once (the graph repeats it: ``loop`` below).
        *("-i", ffmpeg_path(image)),
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


def _filter_graph(
    width: int, height: int, *, label: str, font: str | None, details: str, prompt: str
) -> str:
    fg_height = round(height * 0.6)
    sway = round(width * 0.06)
    bob = round(height * 0.02)
    margin = round(height * 0.03)
    bg = (
        f"[1:v]fps={SIMULATED_FPS},"
        f"scale={width}:{height}:force_original_aspect_ratio=increase,"
        f"crop={width}:{height},setsar=1,eq=brightness=-0.08[bg]"
    )
    # The image is decoded and scaled once, then repeated: with ``-loop 1`` on the input,
    # ffmpeg decoded and scaled it again for every frame, 2/3 of the render's CPU time.
    fg = (
        f"[0:v]scale=-2:{fg_height},format=rgba,loop=loop=-1:size=1:start=0,fps={SIMULATED_FPS}[fg]"
    )
    # Sway left/right every 3 s and bob twice a second: the character visibly "moves".
    overlay = (
        f"[bg][fg]overlay=x='(W-w)/2+{sway}*sin(2*PI*t/3)'"
        f":y='H-h-{margin}-{bob}*abs(sin(2*PI*t))':shortest=0:format=auto"
    )
    font_size = round(height / 22)
    text_size = round(height / 30)
    top = margin + font_size * 2 + round(font_size / 2)
    if font is None:
        # No font anywhere: a coloured banner still marks the video as simulated, and a bar
        # whose colour and length depend on the request tells variants apart.
        digest = hashlib.sha256(f"{details}\n{prompt}".encode()).digest()
        colour = _BAR_COLOURS[digest[0] % len(_BAR_COLOURS)]
        length = round(width * (0.25 + 0.6 * digest[1] / 255))
        banner = (
            f"drawbox=x={margin}:y={margin}:w={round(width * 0.3)}:h={font_size * 2}"
            ":color=0xE0115F@0.9:t=fill,"
            f"drawbox=x={margin}:y={top}:w={length}:h={text_size * 2}:color={colour}@0.95:t=fill"
        )
        return f"{bg};{fg};{overlay},{banner},format=yuv420p[out]"
    fontfile = escape_filter_value(font)
    text = escape_filter_value(f"SIMULATED · {label}")
    parts = [
        f"drawtext=fontfile={fontfile}:text={text}:expansion=none"
        f":x={margin}:y={margin}:fontsize={font_size}:fontcolor=white"
        f":box=1:boxcolor=0xE0115F@0.9:boxborderw={round(font_size / 2)}"
    ]
    columns = math.floor((width - 2 * margin) / (_CHAR_WIDTH * text_size))
    lines = [details, *wrap_prompt(prompt, columns)] if details else wrap_prompt(prompt, columns)
    step = round(text_size * 1.45)
    for i, line in enumerate(lines):
        parts.append(
            f"drawtext=fontfile={fontfile}:text={escape_filter_value(line)}:expansion=none"
            f":x={margin}:y={top + i * step}:fontsize={text_size}"
            f":fontcolor={'0xFFE08A' if i == 0 and details else 'white'}"
            f":box=1:boxcolor=black@0.6:boxborderw={round(text_size / 4)}"
        )
    return f"{bg};{fg};{overlay},{','.join(parts)},format=yuv420p[out]"
