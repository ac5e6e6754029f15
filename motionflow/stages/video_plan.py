"""What ``video.prepare`` makes of a source: its parameters, the cut, size, rate and sound."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from motionflow.errors import MediaError
from motionflow.media.encoding import even
from motionflow.media.probe import MediaInfo, probe
from motionflow.media.rules import MB, RULES, StreamDetails, display_size
from motionflow.stages.media_base import MediaFileParam

__all__ = [
    "VideoPlan",
    "VideoPrepareParams",
    "clip_cut",
    "frame_rate",
    "plan_video",
    "probe_clip",
]

_STILL_DEMUXERS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")

_COMMON_RATES = tuple(
    Fraction(n, d) for n, d in ((24, 1), (25, 1), (30, 1), (48, 1), (50, 1), (60, 1))
) + tuple(Fraction(n, 1001) for n in (24000, 30000, 48000, 60000))


def frame_rate(fps: float) -> str:
    """Return a frame rate as an ffmpeg rational, snapped to a common rate within 1%.

    A phone's variable-rate clip averaging 29.87 fps becomes ``30000/1001``.
    """
    nearest = min(_COMMON_RATES, key=lambda rate: abs(float(rate) - fps))
    rate = nearest if abs(float(nearest) - fps) <= fps / 100 else Fraction(fps)
    return str(rate.limit_denominator(1001))


class VideoPrepareParams(BaseModel):
    """Parameters of ``video.prepare``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False
    )

    src: MediaFileParam = Field(
        description="The source video (any format ffmpeg reads: MP4, MOV, MKV, WebM, GIF, ..."
        "; not animated WebP or SVG: convert those to MP4)."
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
class VideoPlan:
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
    deinterlace: bool = False  # the source has interlaced fields: bwdif makes full frames


def plan_video(
    src: Path,
    info: MediaInfo,
    details: StreamDetails,
    params: VideoPrepareParams,
    warnings: list[str],
) -> VideoPlan:
    """Plan the clip from the probed source, appending what it changes to ``warnings``.

    Raises:
        MediaError: the source is not a clip, or no clip within the model's rules can be made.
    """
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
    source_len = _source_seconds(info, details)
    frame = 1 / info.fps if info.fps > 0 else 1 / 30
    start, length, available = clip_cut(name, source_len, frame, params, warnings)
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
    if details.interlaced:  # last, so run() can show it as an event
        warnings.append(
            f"{name} is interlaced (two half-pictures per frame, from a camcorder or TV "
            "recording): deinterlaced (bwdif) so the model sees whole frames without combing"
        )
    return VideoPlan(
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
        deinterlace=details.interlaced,
    )


_lengths: dict[str, tuple[float, float] | None] = {}


def probe_clip(digest: str, path: Path) -> tuple[float, float] | None:
    """(length, fps) of a source clip by content digest; None when it is not a readable clip
    (the run reports why). Remembered in this process only: planning (``validate``, a refused
    recipe) must not write to the cache, and reading a header costs milliseconds."""
    if digest in _lengths:
        return _lengths[digest]
    from motionflow.media.rules import stream_details

    found: tuple[float, float] | None
    try:
        info = probe(path)
        if not info.has_video or info.duration <= 0 or info.format_name in _STILL_DEMUXERS:
            found = None
        else:
            found = (_source_seconds(info, stream_details(path)), info.fps)
    except (MediaError, OSError):
        found = None
    _lengths[digest] = found
    return found


def _source_seconds(info: MediaInfo, details: StreamDetails) -> float:
    """The source's length: its video stream's (the audio may run longer)."""
    if details.video_seconds:
        return min(info.duration, details.video_seconds)
    return info.duration


def clip_cut(
    name: str, source_len: float, frame: float, params: VideoPrepareParams, warnings: list[str]
) -> tuple[float, float, float]:
    """``(start, length, available)`` of the clip; the planner checks it before any run too.

    Raises:
        MediaError: the start is past the end, or the clip would be under the model's minimum
            (saying so when the source itself is too short: no start or duration can help).
    """
    start = params.start
    least = RULES.video_min_seconds - RULES.duration_tolerance
    if source_len < least:
        msg = (
            f"video.prepare: the source {name} is only {source_len:.2f} s long; the model "
            f"needs a reference clip of at least {RULES.video_min_seconds:g} s, so no start, "
            f"duration or end can make one from it. Fix: use a longer clip (at least "
            f"{RULES.video_min_seconds:g} s) as the source."
        )
        raise MediaError(msg)
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
    if length < least:
        limits = f"start {start:g} s" + (
            f", end {params.end:g} s"
            if params.end is not None
            else f", duration {params.duration:g} s"
            if params.duration is not None
            else ""
        )
        fixes: list[str] = []
        if available < least:  # not enough of the source left after start
            fixes.append(f"lower start (to at most {source_len - RULES.video_min_seconds:.2f} s)")
        if wanted is not None and wanted < least:
            fixes.append(f"raise duration/end (to at least {RULES.video_min_seconds:g} s)")
        msg = (
            f"video.prepare: the clip from {name} would be {length:.2f} s long ({limits}; "
            f"the source is {source_len:.2f} s); the model needs at least "
            f"{RULES.video_min_seconds:g} s. Fix: {' and '.join(fixes)}."
        )
        raise MediaError(msg)
    return start, length, available


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
                f"to {even(width * scale)}x{even(height * scale)}) or use a larger source."
            )
            raise MediaError(msg)

    def side(value: float) -> int:
        return min(max(even(value * scale), low), high)

    return side(width), side(height), scale
