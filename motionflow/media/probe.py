"""Probe a media file with PyAV into a small, frozen :class:`MediaInfo`."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from motionflow.errors import MediaError

__all__ = ["MediaInfo", "probe"]

# Demuxers that read a single still picture; PyAV reports a nominal 25 fps for them.
_IMAGE_FORMAT_SUFFIXES = ("_pipe",)
_IMAGE_FORMATS = frozenset({"image2"})


@dataclass(frozen=True)
class MediaInfo:
    """What motionflow needs to know about a media file.

    Attributes:
        duration: length in seconds (the container's, else the longest stream's); 0 for images.
        width: coded width of the first video stream in pixels, 0 without video.
        height: coded height of the first video stream in pixels, 0 without video.
        fps: average frame rate of the first video stream; 0.0 for images and audio-only files.
        video_codec: codec name of the first video stream (``"h264"``, ``"png"``), or None.
        has_video: whether there is a video stream (a still image counts).
        has_audio: whether there is an audio stream.
        rotation: counter-clockwise display rotation in degrees, 0..359, from the display
            matrix; players rotate by this much, so a 90 means width and height swap on screen.
        format_name: the demuxer's name, e.g. ``"mov,mp4,m4a,3gp,3g2,mj2"`` or ``"png_pipe"``.
    """

    duration: float
    width: int
    height: int
    fps: float
    video_codec: str | None
    has_video: bool
    has_audio: bool
    rotation: int
    format_name: str


def probe(path: Path) -> MediaInfo:
    """Read the properties of an image, video or audio file.

    The first video frame is decoded too, so a file whose header parses but whose data is
    broken is caught here rather than halfway through an encode.

    Args:
        path: the file to probe.

    Returns:
        The file's :class:`MediaInfo`.

    Raises:
        MediaError: the file is missing, empty, not a file, unreadable, or not media that
            ffmpeg can decode.
    """
    _check_file(path)
    from motionflow.media.sniff import SVG_FIX, is_animated_webp, is_svg

    if is_svg(path):
        msg = f"media file {str(path)!r} is an SVG drawing. {SVG_FIX}"
        raise MediaError(msg)
    import av  # 100 ms to import: keep it off the no-op path.

    try:
        with av.open(str(path), mode="r") as container:
            return _info(container)
    except (av.error.FFmpegError, OSError, ValueError, EOFError, RuntimeError) as exc:
        if is_animated_webp(path):
            msg = (
                f"media file {str(path)!r} is an animated WebP, which the probe (PyAV) cannot "
                "decode. Fix: image.prepare takes its first frame as a PNG; or convert it "
                "yourself (to PNG for a still, to MP4 for a clip)."
            )
            raise MediaError(msg) from exc
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        msg = (
            f"cannot read media file {str(path)!r}: {reason}. It is probably corrupt, "
            "truncated, or not an image/video at all (check its extension matches its "
            "content). Fix: re-export or re-download it; `ffmpeg -i <file>` shows what ffmpeg "
            "makes of it."
        )
        raise MediaError(msg) from exc


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        msg = (
            f"media file {str(path)!r} does not exist. "
            "Fix: check the path and the directory it is relative to."
        )
        raise MediaError(msg) from exc
    except OSError as exc:
        msg = (
            f"cannot access media file {str(path)!r}: {exc.strerror or exc}. "
            "Fix: check the file's permissions."
        )
        raise MediaError(msg) from exc
    if not path.is_file():
        msg = (
            f"media path {str(path)!r} is not a regular file. "
            "Fix: point it at an image or video file."
        )
        raise MediaError(msg)
    if st.st_size == 0:
        msg = (
            f"media file {str(path)!r} is empty (0 bytes), probably an interrupted download "
            "or copy. Fix: fetch or export it again."
        )
        raise MediaError(msg)


def _info(container: Any) -> MediaInfo:
    format_name = str(container.format.name)
    videos = list(container.streams.video)
    audios = list(container.streams.audio)
    if not videos and not audios:
        msg = f"has no video or audio stream (format {format_name!r})"
        raise ValueError(msg)
    is_image = format_name in _IMAGE_FORMATS or format_name.endswith(_IMAGE_FORMAT_SUFFIXES)

    width = height = rotation = 0
    fps = 0.0
    codec: str | None = None
    if videos:
        stream = videos[0]
        if stream.codec_context is None:  # a format ffmpeg can demux but not decode
            msg = f"ffmpeg has no decoder for its {format_name!r} picture"
            raise ValueError(msg)
        codec = str(stream.codec_context.name)
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = 0.0 if is_image or rate is None else float(rate)
        frame = _first_frame(container, stream)
        rotation = round(float(getattr(frame, "rotation", 0) or 0)) % 360
        width = width or int(frame.width)
        height = height or int(frame.height)
    elif audios:
        _first_frame(container, audios[0])

    return MediaInfo(
        duration=0.0 if is_image else _duration(container),
        width=width,
        height=height,
        fps=fps,
        video_codec=codec,
        has_video=bool(videos),
        has_audio=bool(audios),
        rotation=rotation,
        format_name=format_name,
    )


def _first_frame(container: Any, stream: Any) -> Any:
    for frame in container.decode(stream):
        return frame
    msg = f"no decodable frame in its {stream.type} stream (codec {stream.codec_context.name!r})"
    raise ValueError(msg)


def _duration(container: Any) -> float:
    if container.duration is not None and container.duration > 0:
        # Container durations are in AV_TIME_BASE (microsecond) units.
        return float(container.duration) / 1_000_000
    longest = 0.0
    for stream in container.streams:
        if stream.duration is not None and stream.time_base is not None:
            longest = max(longest, float(stream.duration * Fraction(stream.time_base)))
    return longest
