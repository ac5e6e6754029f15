"""The ``video.prepare`` and ``image.prepare`` stages: make user media meet the model's rules."""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from motionflow.errors import MediaError
from motionflow.media.ffmpeg import escape_filter_value, ffmpeg_path, run_ffmpeg
from motionflow.media.probe import MediaInfo, probe
from motionflow.media.rules import (
    MB,
    RULES,
    StreamDetails,
    Violation,
    check_image,
    check_video,
    display_size,
    stream_details,
)
from motionflow.stages.base import FileParam, OutputKind, StageContext, StageResult
from motionflow.stages.media_base import MediaStage

__all__ = [
    "AUDIO_BITRATE",
    "IMAGE_MAX_SIDE",
    "X264_CRF",
    "X264_PRESET",
    "ImagePrepareParams",
    "ImagePrepareStage",
    "VideoPrepareParams",
    "VideoPrepareStage",
]

X264_PRESET = "veryfast"
"""x264 speed preset: the clip only drives motion, so encode speed beats the last few % of size."""

X264_CRF = 18
"""x264 constant quality: visually transparent; the bitrate cap keeps it under ``max_mb``."""

AUDIO_BITRATE = 128_000
"""AAC bitrate (bits/s) of a kept sound track."""

IMAGE_MAX_SIDE = 4096
"""Longest side of a prepared image; larger photos are downscaled (the model gains nothing)."""

# Container bytes beyond the streams, and VBV overshoot: aim this far under max_mb.
_SIZE_MARGIN = 0.95
_MIN_VIDEO_BITRATE = 150_000
_MUX = ["-movflags", "+faststart", "-map_metadata", "-1", "-map_chapters", "-1"]
_BITEXACT = ["-fflags", "+bitexact"]
_JPEG_QUALITIES = (2, 5, 10)  # ffmpeg's -q:v, 2 = best; tried before downscaling
# An ffmpeg colour: a name or hex RGB(A), with an optional @alpha; ffmpeg checks the name.
_COLOUR = re.compile(
    r"(?:(?:#|0x)?[0-9A-Fa-f]{6}(?:[0-9A-Fa-f]{2})?|[A-Za-z]+)"  # name, RRGGBB or RRGGBBAA
    r"(?:@(?:[01](?:\.[0-9]+)?|\.[0-9]+))?"  # @alpha, 0..1
)
_ATTACHED_PIC = 1024  # AV_DISPOSITION_ATTACHED_PIC: cover art, not the video
_STILL_DEMUXERS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")


# --- shared helpers -------------------------------------------------------------------------


def _even(value: float) -> int:
    """The nearest even integer of at least 2 (yuv420p needs even sides); halves round up."""
    return max(2, int(value / 2 + 0.5) * 2)


_COMMON_RATES = tuple(
    Fraction(n, d) for n, d in ((24, 1), (25, 1), (30, 1), (48, 1), (50, 1), (60, 1))
) + tuple(Fraction(n, 1001) for n in (24000, 30000, 48000, 60000))


def _rate(fps: float) -> str:
    """A frame rate as an ffmpeg rational, snapped to a common rate within 1%.

    A phone's variable-rate clip averaging 29.87 fps becomes ``30000/1001``.
    """
    nearest = min(_COMMON_RATES, key=lambda rate: abs(float(rate) - fps))
    rate = nearest if abs(float(nearest) - fps) <= fps / 100 else Fraction(fps)
    return str(rate.limit_denominator(1001))


def _seconds(value: float) -> str:
    return f"{value:.6f}"


def _rotation_filters(rotation: int) -> list[str]:
    """Filters that apply a counter-clockwise display rotation (as ffmpeg's autorotate does)."""
    return {90: ["transpose=cclock"], 180: ["hflip", "vflip"], 270: ["transpose=clock"]}.get(
        rotation, []
    )


async def _probe(path: Path) -> tuple[MediaInfo, StreamDetails]:
    info = await asyncio.to_thread(probe, path)
    details = await asyncio.to_thread(stream_details, path)
    return info, details


def _raise_violations(what: str, found: list[Violation]) -> None:
    if found:
        lines = "\n".join(f"  - {v.message()}" for v in found)
        msg = (
            f"{what} still breaks the media rules (a motionflow bug; please report it with "
            f"the source file):\n{lines}"
        )
        raise MediaError(msg)


# --- video.prepare --------------------------------------------------------------------------


class VideoPrepareParams(BaseModel):
    """Parameters of ``video.prepare``."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    src: FileParam = Field(
        description="The source video (any format ffmpeg reads: MP4, MOV, MKV, WebM, GIF, ...)."
    )
    start: float = Field(default=0, ge=0, description="Seconds to skip from the source's start.")
    duration: float | None = Field(
        default=None,
        gt=0,
        description="Seconds to keep from start (default: to the end, clamped to the cap)."
        " Give duration or end, not both.",
    )
    end: float | None = Field(
        default=None,
        gt=0,
        description="Source time, in seconds, where the clip ends (instead of duration).",
    )
    orientation: Literal["image", "video"] = Field(
        default="video",
        description="Sets the length cap: 10 s for image, 30 s for video. It must match the"
        " character_orientation of the generation that uses the clip.",
    )
    audio: bool = Field(
        default=True,
        description="Keep the source's sound (as AAC); false drops it."
        " Needed for keep_original_sound.",
    )
    max_mb: float = Field(
        default=100,
        gt=0,
        le=100,
        description="Largest output in MB (1 MB = 10^6 bytes); the encode's bitrate is capped"
        " to fit. The model's limit is 100.",
    )
    fps: float | None = Field(
        default=None,
        ge=24,
        le=60,
        description="Output frame rate, 24..60 (default: the source's if within 24..60, else"
        " clamped into that range).",
    )
    allow_upscale: bool = Field(
        default=True,
        description="Upscale a video whose shorter side is under 340 px (with a warning);"
        " false makes that an error instead.",
    )

    @model_validator(mode="after")
    def _one_length(self) -> VideoPrepareParams:
        if self.duration is not None and self.end is not None:
            msg = "give duration or end, not both"
            raise ValueError(msg)
        if self.end is not None and self.end <= self.start:
            msg = f"end ({self.end:g} s) must be after start ({self.start:g} s)"
            raise ValueError(msg)
        return self


@dataclass(frozen=True)
class _VideoPlan:
    """What to make from the source: the cut, the size, the frame rate and the sound."""

    start: float
    length: float
    to_end: bool  # the clip runs to the end of the source
    width: int
    height: int
    resize: bool  # scale (or square the pixels) to width x height
    fps: float
    fps_filter: bool  # the rate changes (an encode always makes constant frame rate)
    audio: bool  # the output has sound
    max_bytes: int


class VideoPrepareStage(MediaStage):
    """Trim, scale, retime and encode a clip so the model accepts it as a reference video.

    Stream copy is used only when the cut points fall on keyframes and the source already
    meets every rule; otherwise the clip is encoded to H.264 yuv420p MP4 (``+faststart``).
    """

    kind: ClassVar[str] = "video.prepare"
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = VideoPrepareParams
    outputs: ClassVar[dict[str, OutputKind]] = {"video": "file", "info": "value"}

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Write ``video.mp4`` into the workdir; ``info`` says how and what came out."""
        assert isinstance(params, VideoPrepareParams)
        src = params.src.path
        info, details = await _probe(src)
        warnings: list[str] = []
        plan = _plan_video(src, info, details, params, warnings)
        dest = ctx.workdir / "video.mp4"

        cut = await _copy_cut(src, info, details, plan)
        # A copy that does not come out exact (a variable frame rate, an odd edit list) is
        # thrown away and the clip encoded instead.
        copied = cut is not None and await _copy(src, dest, cut, plan, details)
        if not copied:
            await _encode_within(src, dest, plan, warnings)
        out = await asyncio.to_thread(probe, dest)
        if out.duration < plan.length - max(0.1, 2 / plan.fps):
            msg = (
                f"video.prepare: {str(src)!r} ended early: {plan.length:.2f} s were wanted "
                f"from {plan.start:g} s, but only {out.duration:.2f} s could be decoded; "
                "the file is probably truncated or damaged. Fix: re-export or re-download it."
            )
            raise MediaError(msg)
        found = await asyncio.to_thread(check_video, dest, orientation=params.orientation)
        _raise_violations(f"video.prepare's output from {str(src)!r}", found)

        path_taken = "copy" if copied else "encode"
        width, height = display_size(out)
        return StageResult(
            {
                "video": dest,
                "info": {
                    "path_taken": path_taken,
                    "duration": round(out.duration, 3),
                    "width": width,
                    "height": height,
                    "fps": round(out.fps, 3),
                    "has_audio": out.has_audio,
                    "warnings": warnings,
                },
            }
        )


def _plan_video(
    src: Path,
    info: MediaInfo,
    details: StreamDetails,
    params: VideoPrepareParams,
    warnings: list[str],
) -> _VideoPlan:
    name = repr(str(src))
    if not info.has_video:
        msg = (
            f"video.prepare: {name} has no video stream (it holds only audio). "
            "Fix: point src at a video clip."
        )
        raise MediaError(msg)
    if info.duration <= 0 or info.format_name in _STILL_DEMUXERS:
        msg = (
            f"video.prepare: {name} is a still image, not a clip. Fix: point src at a video "
            "(a GIF or WebM works too); use image.prepare for the character image."
        )
        raise MediaError(msg)

    # Cut: the source's length is its video stream's (audio may run longer).
    source_len = info.duration
    if details.video_seconds:
        source_len = min(source_len, details.video_seconds)
    start = params.start
    frame = 1 / info.fps if info.fps > 0 else 1 / 30
    if start >= source_len - frame / 2:
        msg = (
            f"video.prepare: start {start:g} s is past the end of {name}, which is "
            f"{source_len:.2f} s long. Fix: use a start below {max(source_len - 3, 0):.2f} s."
        )
        raise MediaError(msg)
    available = source_len - start
    wanted = (
        params.end - start
        if params.end is not None
        else params.duration
        if params.duration is not None
        else None
    )
    length = available if wanted is None else min(wanted, available)
    if wanted is not None and wanted > available + frame:
        warnings.append(
            f"asked for {wanted:.2f} s from {start:g} s, but {name} has only {available:.2f} s "
            "left: the clip runs to its end"
        )
    cap = RULES.max_seconds(params.orientation)
    if length > cap:
        warnings.append(
            f"clamped {length:.2f} s to {cap:g} s, the cap of orientation {params.orientation}"
            " (it must match the generation's character_orientation)"
        )
        length = cap
    if length < RULES.video_min_seconds - RULES.duration_tolerance:
        limits = f"start {start:g} s" + (
            f", end {params.end:g} s"
            if params.end is not None
            else f", duration {params.duration:g} s"
            if params.duration is not None
            else ""
        )
        msg = (
            f"video.prepare: the clip from {name} would be {length:.2f} s long ({limits}; "
            f"the source is {source_len:.2f} s); the model needs at least "
            f"{RULES.video_min_seconds:g} s. Fix: lower start, raise duration/end, or use a "
            "longer clip."
        )
        raise MediaError(msg)
    to_end = length >= available - frame / 2

    # Size: square pixels, rotation applied (ffmpeg autorotates), both sides within range.
    coded_w, coded_h = display_size(info)
    if details.sar != 1 and details.sar > 0:
        if info.rotation in (90, 270):
            coded_h = round(coded_h * details.sar)
        else:
            coded_w = round(coded_w * details.sar)
    width, height, scale = _fit_video(name, coded_w, coded_h, params.allow_upscale)
    if scale > 1:
        warnings.append(
            f"upscaled {coded_w}x{coded_h} to {width}x{height}: the model needs both sides "
            f">= {RULES.video_side[0]} px; a larger source looks better"
        )
    resize = (width, height) != display_size(info) or details.sar != 1

    # Frame rate.
    low, high = RULES.video_fps
    tol = RULES.fps_tolerance
    if params.fps is not None:
        fps, fps_filter = params.fps, abs(params.fps - info.fps) > tol
    elif info.fps <= 0:
        fps, fps_filter = 30.0, True
        warnings.append(f"{name} has no known frame rate: encoded at 30 fps")
    elif info.fps < low - tol or info.fps > high + tol:
        fps, fps_filter = min(max(info.fps, low), high), True
        warnings.append(f"changed the frame rate from {round(info.fps, 3):g} to {fps:g} fps")
    else:
        fps, fps_filter = info.fps, False

    if details.hdr:
        warnings.append(
            f"{name} is HDR (PQ/HLG): converted to 8-bit SDR without tone mapping, so its "
            "colours may look flat (the motion is unaffected)"
        )
    return _VideoPlan(
        start=start,
        length=length,
        to_end=to_end,
        width=width,
        height=height,
        resize=resize,
        fps=fps,
        fps_filter=fps_filter,
        audio=params.audio and info.has_audio,
        max_bytes=int(params.max_mb * MB),
    )


def _fit_video(name: str, width: int, height: int, allow_upscale: bool) -> tuple[int, int, float]:
    """Even width and height with both sides within the rules' range, keeping the shape."""
    low, high = RULES.video_side
    longer, shorter = max(width, height), min(width, height)
    if longer * low > high * shorter:
        msg = (
            f"video.prepare: {name} is {width}x{height}, a {longer / shorter:.1f}:1 shape; no "
            f"scaling keeps that shape with both sides within {low}..{high} px (at most "
            f"{high / low:.1f}:1). Fix: crop the source to a less extreme shape first."
        )
        raise MediaError(msg)
    scale = 1.0
    if longer > high:
        scale = high / longer
    if shorter * scale < low:
        scale = low / shorter
        if not allow_upscale:
            msg = (
                f"video.prepare: {name} is {width}x{height}; the model needs both sides >= "
                f"{low} px and allow_upscale is false. Fix: set allow_upscale: true (upscales "
                f"to {_even(width * scale)}x{_even(height * scale)}) or use a larger source."
            )
            raise MediaError(msg)

    def side(value: float) -> int:
        return min(max(_even(value * scale), low), high)

    return side(width), side(height), scale


@dataclass(frozen=True)
class _CopyCut:
    """A stream-copy cut: ``start`` is exactly a keyframe's time; ``length`` None = to the end."""

    start: float
    length: float | None


async def _copy_cut(
    src: Path, info: MediaInfo, details: StreamDetails, plan: _VideoPlan
) -> _CopyCut | None:
    """The cut to stream-copy, when the source meets every rule and the cuts are clean."""
    if not (
        info.format_name.startswith("mov,mp4")
        and info.video_codec == "h264"
        and details.pix_fmt == "yuv420p"
        and info.rotation == 0
        and not plan.resize
        and not plan.fps_filter
    ):
        return None
    size = src.stat().st_size
    if size * plan.length / max(info.duration, plan.length) > plan.max_bytes * _SIZE_MARGIN:
        return None
    if plan.start == 0 and plan.to_end:
        return _CopyCut(0.0, None)
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
        return _CopyCut(start, None)
    # With B-frames a copied stream ends a few frames late (packets are in decode order).
    end = None if reordered else keyframe_at(plan.start + plan.length)
    return None if end is None else _CopyCut(start, end - start)


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


async def _copy(
    src: Path, dest: Path, cut: _CopyCut, plan: _VideoPlan, details: StreamDetails
) -> bool:
    """Stream-copy the cut; False (and no file) when the result is not exactly the cut."""
    args: list[str] = []
    if cut.start > 0:
        # Microseconds, rounded to nearest: ffmpeg rescales that back to the keyframe's pts.
        args += ["-ss", _seconds(cut.start)]
    args += ["-i", ffmpeg_path(src)]
    if cut.length is not None:
        args += ["-t", _seconds(cut.length)]
    args += ["-map", "0:V:0", "-c:v", "copy"]
    if plan.audio:
        # Copied AAC from a later start would bring pre-roll packets: re-encode it then.
        copy_audio = cut.start == 0 and details.audio_codec == "aac"
        args += ["-map", "0:a:0", *(["-c:a", "copy"] if copy_audio else _aac_args())]
    else:
        args += ["-an"]
    args += ["-sn", "-dn", *_MUX, *_BITEXACT, "-f", "mp4", ffmpeg_path(dest)]
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


def _video_bitrate(plan: _VideoPlan, budget_bytes: float, slack_seconds: float) -> int:
    """Bits per second left for the video when ``budget_bytes`` must hold the clip."""
    audio = AUDIO_BITRATE if plan.audio else 0
    return int(budget_bytes * 8 / (plan.length + slack_seconds) - audio)


def _encode_args(src: Path, dest: Path, plan: _VideoPlan, rate_args: list[str]) -> list[str]:
    args: list[str] = []
    if plan.start > 0:  # before -i: fast, and frame-accurate when transcoding (accurate_seek)
        args += ["-ss", _seconds(plan.start)]
    args += ["-i", ffmpeg_path(src), "-t", _seconds(plan.length), "-map", "0:V:0"]
    args += ["-map", "0:a:0", *_aac_args()] if plan.audio else ["-an"]
    filters: list[str] = []
    if plan.resize:
        filters += [f"scale={plan.width}:{plan.height}", "setsar=1"]
    # Constant frame rate even when the rate is kept: a variable-rate source's cut could
    # otherwise average under 24 fps.
    filters.append(f"fps={_rate(plan.fps)}")
    filters.append("format=yuv420p")
    args += ["-vf", ",".join(filters)]
    args += ["-c:v", "libx264", "-preset", X264_PRESET, *rate_args]
    args += ["-profile:v", "high", "-pix_fmt", "yuv420p"]
    args += ["-sn", "-dn", *_MUX, *_BITEXACT, "-f", "mp4", ffmpeg_path(dest)]
    return args


async def _encode_within(src: Path, dest: Path, plan: _VideoPlan, warnings: list[str]) -> None:
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


# --- image.prepare --------------------------------------------------------------------------


class ImagePrepareParams(BaseModel):
    """Parameters of ``image.prepare``."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    src: FileParam = Field(
        description="The character image: PNG, JPEG, WebP, BMP, TIFF, GIF, ... (EXIF"
        " orientation is applied; of an animation or a video, the first frame is used)."
    )
    fit: Literal["pad", "crop"] = Field(
        default="pad",
        description="How to bring width/height into 0.4..2.5: pad adds borders of pad_color,"
        " crop cuts the middle out.",
    )
    format: Literal["png", "jpeg"] = Field(
        default="png",
        description="Output format. png keeps transparency; jpeg flattens it onto pad_color.",
    )
    pad_color: str = Field(
        default="black",
        description="Colour of borders and of the background behind transparency for jpeg: an"
        " ffmpeg colour such as 'white', '#202020' or 'black@0' (transparent, png only).",
    )
    max_mb: float = Field(
        default=10,
        gt=0,
        le=10,
        description="Largest output in MB (1 MB = 10^6 bytes): jpeg quality drops, then the"
        " image shrinks, until it fits. The model's limit is 10.",
    )

    @field_validator("pad_color")
    @classmethod
    def _colour_syntax(cls, value: str) -> str:
        if not _COLOUR.fullmatch(value):
            msg = (
                f"{value!r} is not a colour; use a name like 'black' or 'white', '#RRGGBB', "
                "or either with '@alpha' (e.g. 'black@0')"
            )
            raise ValueError(msg)
        return value


@dataclass(frozen=True)
class _ImageGeometry:
    """Crop at source scale (optional), scale the content, then pad to the canvas."""

    crop: tuple[int, int] | None
    content: tuple[int, int]
    canvas: tuple[int, int]


def _image_geometry(width: int, height: int, fit: str, max_side: int) -> _ImageGeometry:
    """Sizes that bring an image within the ratio and side rules (exact integer arithmetic)."""
    # The rules' ratio limits are 2/5 and 5/2.
    base_w, base_h = width, height
    crop: tuple[int, int] | None = None
    if fit == "crop":
        if 2 * width > 5 * height:
            base_w = 5 * height // 2
        elif 5 * width < 2 * height:
            base_h = 5 * width // 2
        if (base_w, base_h) != (width, height):
            crop = (base_w, base_h)
        canvas_w, canvas_h = base_w, base_h
    else:
        canvas_w, canvas_h = width, height
        if 2 * width > 5 * height:
            canvas_h = -(-2 * width // 5)
        elif 5 * width < 2 * height:
            canvas_w = -(-2 * height // 5)
    low = RULES.image_min_side
    scale = 1.0
    if max(canvas_w, canvas_h) > max_side:
        scale = max_side / max(canvas_w, canvas_h)
    if min(canvas_w, canvas_h) * scale < low:
        scale = low / min(canvas_w, canvas_h)
    out_w, out_h = max(1, round(canvas_w * scale)), max(1, round(canvas_h * scale))
    if min(out_w, out_h) < low:  # float rounding just under the minimum
        out_w, out_h = (low, out_h) if out_w <= out_h else (out_w, low)
    if 2 * out_w > 5 * out_h:  # rounding pushed the ratio out by a pixel
        out_h = -(-2 * out_w // 5)
    elif 5 * out_w < 2 * out_h:
        out_w = -(-2 * out_h // 5)
    if fit == "crop":
        content = (out_w, out_h)
    else:
        content = (
            min(out_w, max(1, round(base_w * scale))),
            min(out_h, max(1, round(base_h * scale))),
        )
    return _ImageGeometry(crop, content, (out_w, out_h))


def _has_alpha(pix_fmt: str | None) -> bool:
    if not pix_fmt:
        return False
    import av

    try:
        fmt = av.VideoFormat(pix_fmt)
    except (ValueError, av.error.FFmpegError):
        return False
    return bool(fmt.has_palette or any(c.is_alpha for c in fmt.components))


class ImagePrepareStage(MediaStage):
    """Convert a character image to PNG or JPEG within the model's size, side and ratio rules."""

    kind: ClassVar[str] = "image.prepare"
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = ImagePrepareParams
    outputs: ClassVar[dict[str, OutputKind]] = {"image": "file", "info": "value"}

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Write ``image.png`` or ``image.jpg`` into the workdir; ``info`` lists what was done."""
        assert isinstance(params, ImagePrepareParams)
        src = params.src.path
        name = repr(str(src))
        info, details = await _probe(src)
        if not info.has_video:
            msg = (
                f"image.prepare: {name} has no picture (it holds only audio). "
                "Fix: point src at an image."
            )
            raise MediaError(msg)
        operations: list[str] = []
        if info.fps > 0:
            operations.append(f"took the first frame of a {info.duration:.2f} s {info.format_name}")
        turn = {90: "90° counter-clockwise", 180: "180°", 270: "90° clockwise"}
        if info.rotation in turn:  # other angles are not applied (nor by ffmpeg's autorotate)
            operations.append(f"rotated {turn[info.rotation]} (orientation metadata)")
        width, height = display_size(info)
        alpha = _has_alpha(details.pix_fmt)
        dest = ctx.workdir / ("image.png" if params.format == "png" else "image.jpg")
        max_bytes = int(params.max_mb * MB)

        max_side = IMAGE_MAX_SIDE
        qualities = list(_JPEG_QUALITIES) if params.format == "jpeg" else [0]
        quality = qualities.pop(0)
        previous: _ImageGeometry | None = None
        while True:
            geometry = _image_geometry(width, height, params.fit, max_side)
            if geometry == previous:
                msg = (
                    f"image.prepare: cannot make {name} smaller than max_mb {params.max_mb:g} "
                    f"(at {geometry.canvas[0]}x{geometry.canvas[1]} it is "
                    f"{dest.stat().st_size / MB:.2f} MB). Fix: raise max_mb (up to 10)"
                    + (" or use format: jpeg." if params.format == "png" else ".")
                )
                raise MediaError(msg)
            await _write_image(src, dest, info.rotation, geometry, params, alpha, quality)
            size = dest.stat().st_size
            if size <= max_bytes:
                break
            previous = geometry
            if qualities:
                quality = qualities.pop(0)
                previous = None  # same size, lower quality: not stuck
                continue
            shrink = math.sqrt(max_bytes / size) * 0.9
            max_side = max(1, int(max(geometry.canvas) * shrink))

        operations += _describe(width, height, geometry, params, alpha)
        if quality > _JPEG_QUALITIES[0]:
            operations.append(f"lowered JPEG quality to q={quality} to fit max_mb")
        if max_side < IMAGE_MAX_SIDE:
            operations.append(f"downscaled to fit max_mb {params.max_mb:g}")
        found = await asyncio.to_thread(check_image, dest)
        _raise_violations(f"image.prepare's output from {name}", found)
        out = await asyncio.to_thread(probe, dest)
        return StageResult(
            {
                "image": dest,
                "info": {
                    "width": out.width,
                    "height": out.height,
                    "format": params.format,
                    "operations": operations,
                },
            }
        )


async def _write_image(
    src: Path,
    dest: Path,
    rotation: int,
    geometry: _ImageGeometry,
    params: ImagePrepareParams,
    alpha: bool,
    quality: int,
) -> None:
    # Rotation is applied here, from the orientation PyAV read, not by ffmpeg's autorotate:
    # an older ffmpeg CLI ignores EXIF orientation while PyAV honours it, and the geometry was
    # computed from PyAV's answer. The display matrix is dropped so nothing rotates twice.
    chain = [*_rotation_filters(rotation), "sidedata=mode=delete:type=DISPLAYMATRIX"]
    if geometry.crop is not None:
        chain.append(f"crop={geometry.crop[0]}:{geometry.crop[1]}")
    content_w, content_h = geometry.content
    canvas_w, canvas_h = geometry.canvas
    chain += [f"scale={content_w}:{content_h}:flags=lanczos", "setsar=1"]
    x, y = (canvas_w - content_w) // 2, (canvas_h - content_h) // 2
    colour = escape_filter_value(params.pad_color)
    padded = (content_w, content_h) != (canvas_w, canvas_h)
    jpeg_tail = ["scale=out_range=full", "format=yuv420p"]
    if params.format == "jpeg" and alpha:
        chain.append("format=rgba")
        graph = (
            f"[0:v]{','.join(chain)}[fg];"
            f"color=c={colour}:s={canvas_w}x{canvas_h},format=rgb24[bg];"
            f"[bg][fg]overlay=x={x}:y={y}:shortest=1,{','.join(jpeg_tail)}[out]"
        )
    else:
        if padded:
            chain.append(f"pad={canvas_w}:{canvas_h}:{x}:{y}:color={colour}")
        if params.format == "jpeg":
            chain += jpeg_tail
        else:
            keep_alpha = alpha or (padded and "@" in params.pad_color)
            chain.append("format=rgba" if keep_alpha else "format=rgb24")
        graph = f"[0:v]{','.join(chain)}[out]"
    codec = (
        ["-c:v", "png"]
        if params.format == "png"
        else ["-c:v", "mjpeg", "-q:v", str(quality), "-color_range", "pc"]
    )
    args = ["-noautorotate", "-i", ffmpeg_path(src), "-filter_complex", graph, "-map", "[out]"]
    args += ["-frames:v", "1", *codec, "-map_metadata", "-1", *_BITEXACT]
    args += ["-f", "image2", "-update", "1", ffmpeg_path(dest)]
    try:
        await run_ffmpeg(args, what=f"prepare the image {str(src)!r}")
    except MediaError as exc:
        if "Cannot find color" in str(exc):
            msg = (
                f"image.prepare: ffmpeg does not know the colour pad_color {params.pad_color!r}."
                " Fix: use a colour name like 'black', 'white' or 'gray', or '#RRGGBB'."
            )
            raise MediaError(msg) from exc
        raise


def _describe(
    width: int, height: int, geometry: _ImageGeometry, params: ImagePrepareParams, alpha: bool
) -> list[str]:
    done: list[str] = []
    canvas_w, canvas_h = geometry.canvas
    if geometry.crop is not None:
        crop_w, crop_h = geometry.crop
        done.append(
            f"cropped {width}x{height} to {crop_w}x{crop_h} (width/height {crop_w / crop_h:.2f})"
        )
        width, height = crop_w, crop_h
    content_w, content_h = geometry.content
    if (content_w, content_h) != (width, height):
        verb = "upscaled" if content_w * content_h > width * height else "downscaled"
        done.append(f"{verb} {width}x{height} to {content_w}x{content_h}")
    if (content_w, content_h) != (canvas_w, canvas_h):
        done.append(
            f"padded to {canvas_w}x{canvas_h} with {params.pad_color} "
            f"(width/height {canvas_w / canvas_h:.2f})"
        )
    if alpha and params.format == "jpeg":
        done.append(f"flattened transparency onto {params.pad_color}")
    return done
