"""The ``video.prepare`` stage: trim and re-encode a reference video to the model's rules."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from motionflow.errors import MediaError
from motionflow.events import Warning as WarningEvent
from motionflow.media.encoding import (
    BITEXACT,
    even,
    probe_both,
    raise_violations,
    seconds,
)
from motionflow.media.ffmpeg import ffmpeg_path, run_ffmpeg
from motionflow.media.probe import MediaInfo, probe
from motionflow.media.rules import (
    MB,
    RULES,
    StreamDetails,
    check_video,
    display_size,
)
from motionflow.stages.base import OutputKind, StageContext, StageResult
from motionflow.stages.media_base import MediaFileParam, MediaStage

__all__ = [
    "AUDIO_BITRATE",
    "X264_CRF",
    "X264_PRESET",
    "VideoPrepareParams",
    "VideoPrepareStage",
]

X264_PRESET = "veryfast"
"""x264 speed preset: the clip only drives motion, so encode speed beats the last few % of size."""

X264_CRF = 18
"""x264 constant quality: visually transparent; the bitrate cap keeps it under ``max_mb``."""

AUDIO_BITRATE = 128_000
"""AAC bitrate (bits/s) of a kept sound track."""

"""Longest side of a prepared image; larger photos are downscaled (the model gains nothing)."""

# Container bytes beyond the streams, and VBV overshoot: aim this far under max_mb.
_SIZE_MARGIN = 0.95
_MIN_VIDEO_BITRATE = 150_000
_MUX = ["-movflags", "+faststart", "-map_metadata", "-1", "-map_chapters", "-1"]
_ATTACHED_PIC = 1024  # AV_DISPOSITION_ATTACHED_PIC: cover art, not the video
_STILL_DEMUXERS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe")


# --- shared helpers ----------------------------------------------------------------------


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


# --- video.prepare --------------------------------------------------------------------------


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
    deinterlace: bool = False  # the source has interlaced fields: bwdif makes full frames


class VideoPrepareStage(MediaStage):
    """Trim, scale, retime and encode a clip so the model accepts it as a reference video.

    Stream copy is used only when the cut points fall on keyframes and the source already
    meets every rule; otherwise the clip is encoded to H.264 yuv420p MP4 (``+faststart``).
    An interlaced source is deinterlaced (ffmpeg's ``bwdif``, one frame per frame), with a
    warning.
    """

    kind: ClassVar[str] = "video.prepare"
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = VideoPrepareParams
    outputs: ClassVar[dict[str, OutputKind]] = {"video": "file", "info": "value"}

    def preflight(self, params: BaseModel, memo: Any = None) -> list[tuple[str, str]]:
        """The clip's length, checked when the plan is made: a source too short (or a start
        past its end) is a recipe error then, not a failure halfway through a run.

        Only the source's header is read (PyAV), once per content digest and process. A file
        that cannot be read as a clip is left to the run, which says what is wrong with it.

        Args:
            params: the instance's parameters.
            memo: the planner's cache (unused: nothing is written while planning).

        Returns:
            ``(parameter, message)`` of the problem, if any.
        """
        assert isinstance(params, VideoPrepareParams)
        del memo
        src = params.src
        length = _probe_seconds(src.digest, src.path)
        if length is None:
            return []
        seconds, fps = length
        try:
            _cut(repr(str(src.path)), seconds, 1 / fps if fps > 0 else 1 / 30, params, [])
        except MediaError as exc:
            text = str(exc).removeprefix("video.prepare: ")
            given = params.model_fields_set
            if seconds < RULES.video_min_seconds - RULES.duration_tolerance:
                where = "src"
            else:
                where = next((f for f in ("duration", "end", "start") if f in given), "src")
            return [(where, text)]
        return []

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Write ``video.mp4`` into the workdir; ``info`` says how and what came out."""
        assert isinstance(params, VideoPrepareParams)
        src = params.src.path
        info, details = await probe_both(src)
        warnings: list[str] = []
        plan = _plan_video(src, info, details, params, warnings)
        if plan.deinterlace:  # the user sees this one now: it changes the picture
            ctx.emit(WarningEvent(warnings[-1] if warnings else "deinterlaced"))
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
        raise_violations(f"video.prepare's output from {str(src)!r}", found)

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
    source_len = _source_seconds(info, details)
    frame = 1 / info.fps if info.fps > 0 else 1 / 30
    start, length, available = _cut(name, source_len, frame, params, warnings)
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
        deinterlace=details.interlaced,
    )


_lengths: dict[str, tuple[float, float] | None] = {}


def _probe_seconds(digest: str, path: Path) -> tuple[float, float] | None:
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


def _cut(
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
        and not plan.deinterlace
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


def _video_bitrate(plan: _VideoPlan, budget_bytes: float, slack_seconds: float) -> int:
    """Bits per second left for the video when ``budget_bytes`` must hold the clip."""
    audio = AUDIO_BITRATE if plan.audio else 0
    return int(budget_bytes * 8 / (plan.length + slack_seconds) - audio)


def _encode_args(src: Path, dest: Path, plan: _VideoPlan, rate_args: list[str]) -> list[str]:
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
    filters.append(f"fps={_rate(plan.fps)}")
    filters.append("format=yuv420p")
    args += ["-vf", ",".join(filters)]
    args += ["-c:v", "libx264", "-preset", X264_PRESET, *rate_args]
    args += ["-profile:v", "high", "-pix_fmt", "yuv420p"]
    args += ["-sn", "-dn", *_MUX, *BITEXACT, "-f", "mp4", ffmpeg_path(dest)]
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
