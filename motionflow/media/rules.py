"""The model's media rules as data, and checks that list every file's violations at once."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from motionflow.errors import MediaError
from motionflow.media.probe import MediaInfo, probe

__all__ = [
    "MB",
    "RULES",
    "MediaRules",
    "StreamDetails",
    "Violation",
    "check_image",
    "check_video",
    "display_size",
    "stream_details",
]

MB = 1_000_000
"""A megabyte as the rules count it: the stricter decimal one (10 MB = 10,000,000 bytes)."""

# Demuxers that read one still picture of a format the model accepts, by codec.
_IMAGE_DEMUXERS = frozenset({"image2", "png_pipe", "jpeg_pipe"})
_MOV_FAMILY = "mov,mp4"  # PyAV's name for the ISO-BMFF demuxer starts with this
_IMAGE_SUFFIXES = {"mjpeg": (".jpg", ".jpeg"), "png": (".png",)}
_VIDEO_SUFFIXES = (".mp4", ".mov")
_ATTACHED_PIC = 1024  # AV_DISPOSITION_ATTACHED_PIC: cover art, not a video
_FIELD_ORDER_TT = 2  # AVFieldOrder: top field first; higher values are interlaced too
# AVCOL_TRC_SMPTE2084 (PQ) and AVCOL_TRC_ARIB_STD_B67 (HLG).
_HDR_TRANSFERS = frozenset({16, 18})


@dataclass(frozen=True)
class MediaRules:
    """The strictest common subset of what Kling and its resellers document (docs/api.md).

    Attributes:
        image_codecs: decoders of the accepted image formats (JPEG, PNG).
        image_max_bytes: largest image file.
        image_min_side: shortest allowed shorter side of an image, in pixels.
        image_ratio: (min, max) of width/height.
        video_codecs: accepted video codecs (H.264).
        video_max_bytes: largest video file.
        video_side: (min, max) pixels for each side of a video.
        video_fps: (min, max) frames per second.
        video_min_seconds: shortest video.
        video_max_seconds_image: longest video with ``character_orientation: image``.
        video_max_seconds_video: longest video with ``character_orientation: video``.
        duration_tolerance: container rounding allowed on either duration limit.
        fps_tolerance: float noise allowed on the frame-rate limits (23.976 is still < 24).
    """

    image_codecs: tuple[str, ...] = ("mjpeg", "png")
    image_max_bytes: int = 10 * MB
    image_min_side: int = 340
    image_ratio: tuple[float, float] = (0.4, 2.5)
    video_codecs: tuple[str, ...] = ("h264",)
    video_max_bytes: int = 100 * MB
    video_side: tuple[int, int] = (340, 3850)
    video_fps: tuple[float, float] = (24.0, 60.0)
    video_min_seconds: float = 3.0
    video_max_seconds_image: float = 10.0
    video_max_seconds_video: float = 30.0
    duration_tolerance: float = 0.05
    fps_tolerance: float = 0.01

    def max_seconds(self, orientation: str) -> float:
        """Longest video for a ``character_orientation`` (``image``: 10 s, ``video``: 30 s)."""
        if orientation == "image":
            return self.video_max_seconds_image
        if orientation == "video":
            return self.video_max_seconds_video
        msg = f"character_orientation must be 'image' or 'video', not {orientation!r}"
        raise ValueError(msg)


RULES = MediaRules()
"""The rules motionflow checks before any upload or spend."""


@dataclass(frozen=True)
class Violation:
    """One broken media rule of one file.

    Attributes:
        subject: the file, as a path string.
        rule: a short id such as ``"video.duration.min"``.
        measured: what the file has, e.g. ``"2.00 s"``.
        limit: what the model needs, e.g. ``">= 3 s"``.
        fix: the option or action that fixes it, e.g. ``"video.prepare: start/duration"``.
    """

    subject: str
    rule: str
    measured: str
    limit: str
    fix: str

    def message(self) -> str:
        """Render the violation as one line: file, rule, measured value, limit and fix."""
        return (
            f"{self.subject!r} breaks {self.rule}: {self.measured}; the model needs {self.limit}."
            f" Fix: {self.fix}"
        )


@dataclass(frozen=True)
class StreamDetails:
    """What the rules' fixes need beyond :class:`MediaInfo` (read with PyAV, no decoding).

    Attributes:
        pix_fmt: pixel format of the first video stream (``"yuv420p"``), or None.
        sar: sample (pixel) aspect ratio; 1 for square pixels or when unknown.
        hdr: the video uses an HDR transfer (PQ or HLG).
        video_seconds: length of the first video stream, or None when the container lacks it.
        audio_codec: codec of the first audio stream, or None.
        interlaced: the first video stream declares interlaced fields (its field order is
            top or bottom first), as camcorder and broadcast recordings do.
    """

    pix_fmt: str | None
    sar: Fraction
    hdr: bool
    video_seconds: float | None
    audio_codec: str | None
    interlaced: bool = False


def stream_details(path: Path) -> StreamDetails:
    """Read the pixel format, pixel aspect, HDR transfer and audio codec of a media file.

    Call :func:`~motionflow.media.probe.probe` first: it is the one that turns unreadable files
    into a clear :class:`MediaError`.

    Args:
        path: an image or video file that probes.

    Returns:
        The file's :class:`StreamDetails`.

    Raises:
        MediaError: the file cannot be opened.
    """
    import av

    try:
        with av.open(str(path), mode="r") as container:
            return _details(container)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        msg = (
            f"cannot read the streams of media file {str(path)!r}: {exc}. "
            "Fix: re-export or re-download it."
        )
        raise MediaError(msg) from exc


def _details(container: Any) -> StreamDetails:
    videos = [s for s in container.streams.video if not s.disposition & _ATTACHED_PIC]
    audios = list(container.streams.audio)
    pix_fmt: str | None = None
    sar = Fraction(1)
    hdr = False
    seconds: float | None = None
    interlaced = False
    if videos:
        stream = videos[0]
        ctx = stream.codec_context
        pix_fmt = ctx.pix_fmt
        ratio = stream.sample_aspect_ratio or ctx.sample_aspect_ratio
        if ratio is not None and ratio.numerator > 0:
            sar = Fraction(ratio)
        hdr = int(ctx.color_trc or 0) in _HDR_TRANSFERS
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        interlaced = _is_interlaced(getattr(ctx, "field_order", None))
    audio = str(audios[0].codec_context.name) if audios else None
    return StreamDetails(pix_fmt, sar, hdr, seconds, audio, interlaced)


def _is_interlaced(field_order: object) -> bool:
    """AVFieldOrder: 0 unknown, 1 progressive, 2..5 interlaced (PyAV may give a name)."""
    if isinstance(field_order, int):
        return field_order >= _FIELD_ORDER_TT
    return str(field_order or "").lower() in ("tt", "bb", "tb", "bt")


def _too_big(path: Path, subject: str, what: str, limit: int, fix: str) -> list[Violation]:
    size = path.stat().st_size
    if size <= limit:
        return []
    measured, allowed = f"{size / MB:.2f} MB", f"<= {limit / MB:g} MB"
    return [Violation(subject, f"{what}.bytes.max", measured, allowed, fix)]


def display_size(info: MediaInfo) -> tuple[int, int]:
    """Width and height as players show them: swapped when the display rotation is 90 or 270."""
    if info.rotation in (90, 270):
        return info.height, info.width
    return info.width, info.height


def check_image(path: Path) -> list[Violation]:
    """Check a character image against the model's rules; return every violation.

    Args:
        path: the image file.

    Returns:
        The violations, empty when the image can be sent as it is.

    Raises:
        MediaError: the file is missing, empty, or not decodable media.
    """
    info = probe(path)
    subject = str(path)
    fix_convert = "image.prepare (converts to PNG or JPEG)"
    found: list[Violation] = []
    is_still = info.format_name in _IMAGE_DEMUXERS and info.video_codec in RULES.image_codecs
    if not is_still:
        what = "audio only" if not info.has_video else f"{info.video_codec} in {info.format_name}"
        found.append(Violation(subject, "image.format", what, "a JPEG or PNG image", fix_convert))
    else:
        suffixes = _IMAGE_SUFFIXES[str(info.video_codec)]
        # Cache blobs have no extension: only a misleading one is a problem (publishers and
        # servers take the content type from it).
        if path.suffix and path.suffix.lower() not in suffixes:
            kind = "JPEG" if info.video_codec == "mjpeg" else "PNG"
            found.append(
                Violation(
                    subject,
                    "image.extension",
                    f"a {kind} named {path.suffix}",
                    f"the extension {' or '.join(suffixes)}",
                    f"rename it, or image.prepare (writes {suffixes[0]})",
                )
            )
    found += _too_big(
        path,
        subject,
        "image",
        RULES.image_max_bytes,
        "image.prepare: max_mb (downscales or lowers JPEG quality)",
    )
    if info.has_video:
        width, height = display_size(info)
        shorter = min(width, height)
        if shorter < RULES.image_min_side:
            found.append(
                Violation(
                    subject,
                    "image.side.min",
                    f"{width}x{height} (shorter side {shorter} px)",
                    f"a shorter side >= {RULES.image_min_side} px",
                    "image.prepare (upscales), or a larger image",
                )
            )
        low, high = RULES.image_ratio
        ratio = width / height if height else 0.0
        if not low <= ratio <= high:
            found.append(
                Violation(
                    subject,
                    "image.ratio",
                    f"width/height {ratio:.2f} ({width}x{height})",
                    f"width/height within {low:g}..{high:g}",
                    "image.prepare: fit pad or crop",
                )
            )
    return found


def check_video(path: Path, *, orientation: str = "video") -> list[Violation]:
    """Check a reference video against the model's rules; return every violation.

    Args:
        path: the video file.
        orientation: the generation's ``character_orientation``; sets the longest allowed
            duration (``image``: 10 s, ``video``: 30 s).

    Returns:
        The violations, empty when the video can be sent as it is.

    Raises:
        MediaError: the file is missing, empty, not decodable, or has no video stream.
    """
    cap = RULES.max_seconds(orientation)
    info = probe(path)
    subject = str(path)
    if not info.has_video:
        msg = (
            f"media file {subject!r} has no video stream (it holds only audio); the model needs "
            "a video of the motion to follow. Fix: point the video at an MP4 or MOV clip."
        )
        raise MediaError(msg)
    prepare = "video.prepare (re-encodes to H.264 MP4)"
    found: list[Violation] = []
    is_mov = info.format_name.startswith(_MOV_FAMILY)
    if not is_mov:
        found.append(Violation(subject, "video.container", info.format_name, "MP4 or MOV", prepare))
    elif path.suffix and path.suffix.lower() not in _VIDEO_SUFFIXES:
        found.append(
            Violation(
                subject,
                "video.extension",
                f"an MP4/MOV named {path.suffix}",
                "the extension .mp4 or .mov",
                f"rename it, or {prepare}",
            )
        )
    if info.video_codec not in RULES.video_codecs:
        found.append(
            Violation(subject, "video.codec", str(info.video_codec), "H.264 video", prepare)
        )
    found += _too_big(
        path,
        subject,
        "video",
        RULES.video_max_bytes,
        "video.prepare: max_mb, or a shorter duration",
    )
    width, height = display_size(info)
    low, high = RULES.video_side
    if min(width, height) < low:
        found.append(
            Violation(
                subject,
                "video.side.min",
                f"{width}x{height}",
                f"both sides >= {low} px",
                "video.prepare (upscales, allow_upscale: true), or a larger video",
            )
        )
    if max(width, height) > high:
        found.append(
            Violation(
                subject,
                "video.side.max",
                f"{width}x{height}",
                f"both sides <= {high} px",
                "video.prepare (downscales)",
            )
        )
    fps_low, fps_high = RULES.video_fps
    tol = RULES.fps_tolerance
    if not fps_low - tol <= info.fps <= fps_high + tol:
        found.append(
            Violation(
                subject,
                "video.fps",
                f"{round(info.fps, 3):g} fps" if info.fps else "an unknown frame rate",
                f"{fps_low:g}..{fps_high:g} fps",
                "video.prepare: fps (default: clamps into range)",
            )
        )
    tol = RULES.duration_tolerance
    if info.duration < RULES.video_min_seconds - tol:
        found.append(
            Violation(
                subject,
                "video.duration.min",
                f"{info.duration:.2f} s",
                f">= {RULES.video_min_seconds:g} s",
                "video.prepare: start/duration, or a longer clip",
            )
        )
    elif info.duration > cap + tol:
        wider = " or character_orientation: video (up to 30 s)" if orientation == "image" else ""
        found.append(
            Violation(
                subject,
                "video.duration.max",
                f"{info.duration:.2f} s",
                f"<= {cap:g} s with character_orientation: {orientation}",
                f"video.prepare: start/duration/end (it clamps to {cap:g} s){wider}",
            )
        )
    return found
