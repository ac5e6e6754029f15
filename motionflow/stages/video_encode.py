"""Making ``video.prepare``'s clip: a stream copy when it comes out exact, else an H.264 encode."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from motionflow.errors import MediaError
from motionflow.media.encoding import BITEXACT, seconds
from motionflow.media.ffmpeg import ffmpeg_path, run_ffmpeg
from motionflow.media.probe import MediaInfo, probe
from motionflow.media.rules import MB, RULES, StreamDetails
from motionflow.stages.video_plan import VideoPlan, frame_rate

__all__ = [
    "AUDIO_BITRATE",
    "X264_CRF",
    "X264_PRESET",
    "CopyCut",
    "copy_clip",
    "copy_cut",
    "encode_within",
]

X264_PRESET = "veryfast"
"""x264 speed preset: the clip only drives motion, so encode speed beats the last few % of size."""

X264_CRF = 18
"""x264 constant quality: visually transparent; the bitrate cap keeps it under ``max_mb``."""

AUDIO_BITRATE = 128_000
"""AAC bitrate (bits/s) of a kept sound track."""

# Container bytes beyond the streams, and VBV overshoot: aim this far under max_mb.
_SIZE_MARGIN = 0.95
_MIN_VIDEO_BITRATE = 150_000
_MUX = ["-movflags", "+faststart", "-map_metadata", "-1", "-map_chapters", "-1"]
_ATTACHED_PIC = 1024  # AV_DISPOSITION_ATTACHED_PIC: cover art, not the video


@dataclass(frozen=True)
class CopyCut:
    """A stream-copy cut: ``start`` is exactly a keyframe's time; ``length`` None = to the end."""

    start: float
    length: float | None


async def copy_cut(
    src: Path, info: MediaInfo, details: StreamDetails, plan: VideoPlan
) -> CopyCut | None:
    """The cut to stream-copy, when the source meets every rule and the cuts are clean."""
    if not (
        info.format_name.startswith("mov,mp4")
        and info.video_codec == "h264"
        and details.pix_fmt == "yuv420p"
        and info.rotation == 0
        and not plan.resize
        and not plan.fps_filter
        and not plan.deinterlace
    ):
        return None
    size = src.stat().st_size
    if size * plan.length / max(info.duration, plan.length) > plan.max_bytes * _SIZE_MARGIN:
        return None
    if plan.start == 0 and plan.to_end:
        return CopyCut(0.0, None)
    keyframes, reordered = await asyncio.to_thread(_keyframes, src, plan.start + plan.length + 1)
    half = 0.5 / plan.fps

    def keyframe_at(t: float) -> float | None:
        return next((k for k in keyframes if abs(k - t) <= half), None)

    # A copy from elsewhere would start at an earlier keyframe, with the frames before the cut
    # hidden behind an edit list (and perhaps billed): the start must be a keyframe.
    start = 0.0 if plan.start == 0 else keyframe_at(plan.start)
    if start is None:
        return None
    if plan.to_end:
        return CopyCut(start, None)
    # With B-frames a copied stream ends a few frames late (packets are in decode order).
    end = None if reordered else keyframe_at(plan.start + plan.length)
    return None if end is None else CopyCut(start, end - start)


def _keyframes(path: Path, until: float) -> tuple[list[float], bool]:
    """Keyframe times (seconds from the file's start) up to ``until``, and whether frames are
    stored out of display order (B-frames)."""
    import av

    times: list[float] = []
    reordered = False
    with av.open(str(path), mode="r") as container:
        stream = next(s for s in container.streams.video if not s.disposition & _ATTACHED_PIC)
        origin = (container.start_time or 0) / 1_000_000
        base = stream.time_base
        if base is None:  # no timing to cut by: never copy
            return times, True
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            if packet.dts is not None and packet.dts != packet.pts:
                reordered = True
            if packet.is_keyframe:
                times.append(float(packet.pts * base) - origin)
            if packet.dts is not None and float(packet.dts * base) - origin > until:
                break
    return times, reordered


def _video_packets(path: Path) -> int:
    """Video packets stored in a file, hidden ones (before an edit list's start) included."""
    import av

    with av.open(str(path), mode="r") as container:
        return sum(1 for p in container.demux(container.streams.video[0]) if p.size)


async def copy_clip(
    src: Path, dest: Path, cut: CopyCut, plan: VideoPlan, details: StreamDetails
) -> bool:
    """Stream-copy the cut; False (and no file) when the result is not exactly the cut."""
    args: list[str] = []
    if cut.start > 0:
        # Microseconds, rounded to nearest: ffmpeg rescales that back to the keyframe's pts.
        args += ["-ss", seconds(cut.start)]
    args += ["-i", ffmpeg_path(src)]
    if cut.length is not None:
        args += ["-t", seconds(cut.length)]
    args += ["-map", "0:V:0", "-c:v", "copy"]
    if plan.audio:
        # Copied AAC from a later start would bring pre-roll packets: re-encode it then.
        copy_audio = cut.start == 0 and details.audio_codec == "aac"
        args += ["-map", "0:a:0", *(["-c:a", "copy"] if copy_audio else _aac_args())]
    else:
        args += ["-an"]
    args += ["-sn", "-dn", *_MUX, *BITEXACT, "-f", "mp4", ffmpeg_path(dest)]
    try:
        await run_ffmpeg(args, what=f"copy a clip of {str(src)!r}")
    except MediaError:  # the encode that follows reports what is wrong with the source
        dest.unlink(missing_ok=True)
        return False
    out = await asyncio.to_thread(probe, dest)
    frames = await asyncio.to_thread(_video_packets, dest)
    exact = (
        abs(out.duration - plan.length) <= max(RULES.duration_tolerance, 1.5 / plan.fps)
        and abs(frames - plan.length * plan.fps) <= 1
    )
    if not exact:
        dest.unlink()
    return exact


def _aac_args() -> list[str]:
    return ["-c:a", "aac", "-b:a", str(AUDIO_BITRATE), "-ac", "2"]


def _video_bitrate(plan: VideoPlan, budget_bytes: float, slack_seconds: float) -> int:
    """Bits per second left for the video when ``budget_bytes`` must hold the clip."""
    audio = AUDIO_BITRATE if plan.audio else 0
    return int(budget_bytes * 8 / (plan.length + slack_seconds) - audio)


def _encode_args(src: Path, dest: Path, plan: VideoPlan, rate_args: list[str]) -> list[str]:
    args: list[str] = []
    if plan.start > 0:  # before -i: fast, and frame-accurate when transcoding (accurate_seek)
        args += ["-ss", seconds(plan.start)]
    args += ["-i", ffmpeg_path(src), "-t", seconds(plan.length), "-map", "0:V:0"]
    args += ["-map", "0:a:0", *_aac_args()] if plan.audio else ["-an"]
    filters: list[str] = []
    if plan.deinterlace:  # first: the fields must be whole frames before they are scaled
        filters.append("bwdif=mode=send_frame:parity=auto:deint=all")
    if plan.resize:
        filters += [f"scale={plan.width}:{plan.height}", "setsar=1"]
    # Constant frame rate even when the rate is kept: a variable-rate source's cut could
    # otherwise average under 24 fps.
    filters.append(f"fps={frame_rate(plan.fps)}")
    filters.append("format=yuv420p")
    args += ["-vf", ",".join(filters)]
    args += ["-c:v", "libx264", "-preset", X264_PRESET, *rate_args]
    args += ["-profile:v", "high", "-pix_fmt", "yuv420p"]
    args += ["-sn", "-dn", *_MUX, *BITEXACT, "-f", "mp4", ffmpeg_path(dest)]
    return args


async def encode_within(src: Path, dest: Path, plan: VideoPlan, warnings: list[str]) -> None:
    """Encode at constant quality under a bitrate cap; re-encode lower if still too big."""
    name = repr(str(src))
    # VBV may overshoot the cap by up to one buffer (1 s): count it in.
    cap = _video_bitrate(plan, plan.max_bytes * _SIZE_MARGIN, 1.0)
    if cap < _MIN_VIDEO_BITRATE:
        msg = (
            f"video.prepare: max_mb {plan.max_bytes / MB:g} leaves {max(cap, 0) / 1000:.0f} kb/s "
            f"for {plan.length:.2f} s of {plan.width}x{plan.height} video from {name}, below "
            f"the {_MIN_VIDEO_BITRATE // 1000} kb/s minimum. Fix: raise max_mb, shorten "
            "duration, or set audio: false."
        )
        raise MediaError(msg)
    rate = ["-crf", str(X264_CRF), "-maxrate", str(cap), "-bufsize", str(cap)]
    await run_ffmpeg(_encode_args(src, dest, plan, rate), what=f"prepare a clip of {name}")
    size = dest.stat().st_size
    if size <= plan.max_bytes:
        return
    # Average bitrate aimed under the limit by the measured overshoot.
    target = int(_video_bitrate(plan, plan.max_bytes * 0.9, 0.0) * min(1.0, plan.max_bytes / size))
    if target >= _MIN_VIDEO_BITRATE:
        rate = ["-b:v", str(target), "-maxrate", str(target), "-bufsize", str(target)]
        await run_ffmpeg(_encode_args(src, dest, plan, rate), what=f"re-encode a clip of {name}")
        size = dest.stat().st_size
        if size <= plan.max_bytes:
            warnings.append(
                f"re-encoded at {target / 1000:.0f} kb/s to stay under max_mb "
                f"{plan.max_bytes / MB:g}"
            )
            return
    msg = (
        f"video.prepare: the clip from {name} is {size / MB:.2f} MB, over max_mb "
        f"{plan.max_bytes / MB:g}, even at a lower bitrate. Fix: raise max_mb (up to 100) or "
        "shorten duration."
    )
    raise MediaError(msg)
