"""Synthesise the bad-media corpus into a directory with ffmpeg: nothing binary is committed.

Each maker writes one file and returns its path; :func:`make_corpus` builds a chosen set
concurrently. Clips are tiny (<= 640x360, a few seconds, ``-preset ultrafast``) except where
the defect is the size itself.

Decisions the corpus documents:

- a Matroska file named ``.mp4`` probes fine: ``check_video`` reports ``video.container`` and
  ``video.prepare`` re-encodes it (a stream copy is only made from MP4/MOV);
- GIF and WebM sources are converted by ``video.prepare`` like any other clip;
- a JPEG's EXIF orientation is written by hand (an APP1 segment), since ffmpeg's encoders write
  none from a plain source.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from motionflow.media.ffmpeg import run_ffmpeg

__all__ = ["IMAGES", "MAKERS", "VIDEOS", "make_corpus"]

LAVFI = ["-f", "lavfi", "-i"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "64k"]
QUIET = ["-map_metadata", "-1", "-fflags", "+bitexact"]

Maker = Callable[[Path], Awaitable[Path]]


async def _clip(
    dest: Path,
    *,
    size: str = "640x360",
    fps: float = 25,
    seconds: float = 4.0,
    audio: bool = True,
    source: str = "testsrc2",
    extra: Iterable[str] = (),
) -> Path:
    """An H.264 (+ AAC) clip with a keyframe every second and no B-frames."""
    args = [*LAVFI, f"{source}=s={size}:r={fps}:d={seconds}"]
    if audio:
        args += [*LAVFI, f"sine=f=440:d={seconds}"]
    args += [*X264, "-g", str(round(fps)), *extra]
    args += [*AAC, "-shortest"] if audio else ["-an"]
    await run_ffmpeg([*args, *QUIET, str(dest)], what=f"make {dest.name}")
    return dest


async def good(d: Path) -> Path:
    """4 s, 640x360, 25 fps, H.264 + AAC: meets every rule (keyframes at whole seconds)."""
    return await _clip(d / "good.mp4")


async def bframes(d: Path) -> Path:
    """Like ``good`` but with B-frames (stored out of display order), as most encoders make."""
    return await _clip(d / "bframes.mp4", extra=["-preset", "veryfast", "-bf", "2"])


async def corrupt(d: Path) -> Path:
    """Random bytes named .mp4."""
    path = d / "corrupt.mp4"
    path.write_bytes(random.Random(7).randbytes(64 * 1024))
    return path


async def truncated(d: Path) -> Path:
    """A valid MP4 (index at the end) cut in half: the index is gone."""
    whole = await _clip(d / "whole.mp4")
    path = d / "truncated.mp4"
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    whole.unlink()
    return path


async def truncated_faststart(d: Path) -> Path:
    """A ``+faststart`` MP4 cut in half: the index survives, half the frames do not."""
    whole = await _clip(d / "whole-fs.mp4", extra=["-movflags", "+faststart"])
    path = d / "truncated_faststart.mp4"
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    whole.unlink()
    return path


async def mkv_as_mp4(d: Path) -> Path:
    """H.264 + AAC in Matroska, named .mp4."""
    return await _clip(d / "mkv_as_mp4.mp4", extra=["-f", "matroska"])


async def gif(d: Path) -> Path:
    """An animated GIF: 3.5 s, 320x240, 10 fps."""
    path = d / "anim.gif"
    await run_ffmpeg([*LAVFI, "testsrc=s=320x240:r=10:d=3.5", str(path)], what="make anim.gif")
    return path


async def webm(d: Path) -> Path:
    """VP9 + Opus in WebM: 3.5 s, 320x240, 30 fps."""
    path = d / "clip.webm"
    args = [*LAVFI, "testsrc=s=320x240:r=30:d=3.5", *LAVFI, "sine=d=3.5"]
    args += ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"]
    await run_ffmpeg([*args, str(path)], what="make clip.webm")
    return path


async def audio_only(d: Path) -> Path:
    """AAC in an MP4 with no video stream."""
    path = d / "audio_only.mp4"
    await run_ffmpeg([*LAVFI, "sine=d=3", *AAC, *QUIET, str(path)], what="make audio_only.mp4")
    return path


async def too_short(d: Path) -> Path:
    """2 s: under the 3 s minimum."""
    return await _clip(d / "too_short.mp4", seconds=2)


async def too_small(d: Path) -> Path:
    """200x150: both sides under 340."""
    return await _clip(d / "too_small.mp4", size="200x150", seconds=3.2)


async def extreme_aspect(d: Path) -> Path:
    """1000x200 (5:1): fits once upscaled to 1700x340."""
    return await _clip(d / "extreme_aspect.mp4", size="1000x200", seconds=3.2, audio=False)


async def impossible_aspect(d: Path) -> Path:
    """4000x300 (13:1): no size keeps the shape with both sides within 340..3850."""
    return await _clip(
        d / "impossible_aspect.mp4", size="4000x300", fps=24, seconds=3.2, audio=False
    )


async def uhd_120fps(d: Path) -> Path:
    """3840x2160 at 120 fps for 0.5 s: too fast and too short (sides are within range)."""
    return await _clip(d / "uhd_120fps.mp4", size="3840x2160", fps=120, seconds=0.5, audio=False)


async def high_fps(d: Path) -> Path:
    """640x360 at 120 fps for 3.2 s: video.prepare brings it to 60 fps."""
    return await _clip(d / "high_fps.mp4", fps=120, seconds=3.2, audio=False)


async def rotated(d: Path) -> Path:
    """A phone clip: 640x360 coded, shown 360x640 (display rotation 90° counter-clockwise)."""
    plain = await _clip(d / "landscape.mp4", seconds=3.2)
    path = d / "rotated.mp4"
    args = ["-display_rotation", "90", "-i", str(plain), "-c", "copy", *QUIET, str(path)]
    await run_ffmpeg(args, what="make rotated.mp4")
    plain.unlink()
    return path


async def long(d: Path) -> Path:
    """12 s, 640x360, 24 fps, silent: over the 10 s cap of orientation image."""
    return await _clip(d / "long.mp4", fps=24, seconds=12, audio=False)


async def scene_cuts(d: Path) -> Path:
    """Three shots: 1 s, 3.4 s and 1.6 s (cuts at 1.0 s and 4.4 s), 25 fps, no sound."""
    path = d / "scenes.mp4"
    shots = [("testsrc2", 1.0), ("smptebars", 3.4), ("rgbtestsrc", 1.6)]
    args: list[str] = []
    for source, seconds in shots:
        args += [*LAVFI, f"{source}=s=640x360:r=25:d={seconds}"]
    graph = "".join(f"[{i}:v]" for i in range(len(shots))) + f"concat=n={len(shots)}:v=1:a=0"
    args += ["-filter_complex", graph, *X264, *QUIET, str(path)]
    await run_ffmpeg(args, what="make scenes.mp4")
    return path


async def still_png(d: Path) -> Path:
    """A still image given where a clip is expected."""
    path = d / "still.png"
    await run_ffmpeg([*LAVFI, "testsrc=s=640x360", "-frames:v", "1", str(path)], what="still")
    return path


# --- images ---------------------------------------------------------------------------------


async def _image(dest: Path, source: str, *extra: str) -> Path:
    args = [*LAVFI, source, "-frames:v", "1", *extra, *QUIET, "-update", "1", str(dest)]
    await run_ffmpeg(args, what=f"make {dest.name}")
    return dest


async def tiny_png(d: Path) -> Path:
    """100x100 PNG: upscaled to 340x340."""
    return await _image(d / "tiny.png", "testsrc=s=100x100")


async def wide_png(d: Path) -> Path:
    """2000x300 PNG (6.7:1): padded to 2000x800 or cropped to 750x300."""
    return await _image(d / "wide.png", "testsrc=s=2000x300")


async def alpha_png(d: Path) -> Path:
    """400x400 red RGBA PNG whose left half is fully transparent."""
    path = d / "alpha.png"
    mask = "color=c=white:s=400x400,drawbox=x=0:y=0:w=200:h=400:color=black:t=fill,format=gray"
    args = [*LAVFI, "color=c=red:s=400x400", *LAVFI, mask]
    args += ["-filter_complex", "[0:v][1:v]alphamerge,format=rgba", "-frames:v", "1"]
    await run_ffmpeg([*args, *QUIET, "-update", "1", str(path)], what="make alpha.png")
    return path


async def webp(d: Path) -> Path:
    """500x400 WebP: converted to PNG."""
    return await _image(d / "photo.webp", "testsrc=s=500x400", "-c:v", "libwebp")


async def exif_jpeg(d: Path) -> Path:
    """400x200 JPEG with EXIF orientation 6 (shown rotated 90° clockwise: 200x400)."""
    plain = await _image(d / "plain.jpg", "testsrc=s=400x200")
    data = plain.read_bytes()
    plain.unlink()
    # Little-endian TIFF with one IFD entry: Orientation (0x0112), SHORT, count 1, value 6.
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + b"\x00" * 4
    app1 = b"Exif\x00\x00" + tiff
    path = d / "exif6.jpg"
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])
    return path


async def big_photo(d: Path) -> Path:
    """5000x3000 JPEG: the longer side is capped at 4096."""
    return await _image(d / "big.jpg", "testsrc2=s=5000x3000", "-q:v", "5")


async def noisy_png(d: Path) -> Path:
    """800x800 PNG of noise: hard to compress, for the max_mb paths."""
    return await _image(d / "noisy.png", "nullsrc=s=800x800,geq=random(1)*255:128:128")


async def png_named_jpg(d: Path) -> Path:
    """A PNG whose name says JPEG."""
    return await _image(d / "liar.jpg", "testsrc=s=400x400", "-c:v", "png", "-f", "image2")


async def text_png(d: Path) -> Path:
    """A text file named .png."""
    path = d / "notes.png"
    path.write_text("not an image\n", encoding="utf-8")
    return path


VIDEOS: dict[str, Maker] = {
    "good": good,
    "bframes": bframes,
    "corrupt": corrupt,
    "truncated": truncated,
    "truncated_faststart": truncated_faststart,
    "mkv_as_mp4": mkv_as_mp4,
    "gif": gif,
    "webm": webm,
    "audio_only": audio_only,
    "too_short": too_short,
    "too_small": too_small,
    "extreme_aspect": extreme_aspect,
    "impossible_aspect": impossible_aspect,
    "uhd_120fps": uhd_120fps,
    "high_fps": high_fps,
    "rotated": rotated,
    "long": long,
    "scenes": scene_cuts,
    "still_png": still_png,
}
"""Video makers by corpus name."""

IMAGES: dict[str, Maker] = {
    "tiny_png": tiny_png,
    "wide_png": wide_png,
    "alpha_png": alpha_png,
    "webp": webp,
    "exif_jpeg": exif_jpeg,
    "big_photo": big_photo,
    "noisy_png": noisy_png,
    "png_named_jpg": png_named_jpg,
    "text_png": text_png,
}
"""Image makers by corpus name."""

MAKERS: dict[str, Maker] = {**VIDEOS, **IMAGES}
"""Every maker by corpus name."""


async def make_corpus(dest: Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Make the named corpus files (default: all) in ``dest``, a few at a time.

    Args:
        dest: an existing, empty directory.
        names: keys of :data:`MAKERS`.

    Returns:
        Corpus name -> path of the made file.
    """
    chosen = list(MAKERS if names is None else names)
    gate = asyncio.Semaphore(max(2, os.cpu_count() or 2))

    async def one(name: str) -> tuple[str, Path]:
        async with gate:
            return name, await MAKERS[name](dest)

    return dict(await asyncio.gather(*(one(name) for name in chosen)))
