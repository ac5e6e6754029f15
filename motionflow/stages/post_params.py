"""Parameters of the post-processing stages: transcode, thumbnail, GIF, concat and audio."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from motionflow.stages.base import FileParam

__all__ = [
    "X264_PRESETS",
    "VideoAudioParams",
    "VideoConcatParams",
    "VideoGifParams",
    "VideoThumbnailParams",
    "VideoTranscodeParams",
]


X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
"""Speed presets of x264 and x265, fastest first; VP9 maps them onto its own speed settings."""

_CONFIG = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
_SCALE = re.compile(r"^(-[12]|[1-9]\d{0,4}):(-[12]|[1-9]\d{0,4})$")


class VideoTranscodeParams(BaseModel):
    """Parameters of ``video.transcode``."""

    model_config = _CONFIG

    src: FileParam = Field(description="The video to re-encode: a reference to a file.")
    codec: Literal["h264", "h265", "vp9"] = Field(
        default="h264",
        description="h264 or h265 (MP4 with AAC audio), or vp9 (WebM with Opus audio).",
    )
    crf: int = Field(
        default=23,
        ge=0,
        le=51,
        description="Constant quality, 0..51: lower is better and larger; 23 is a good default"
        " for h264, 28 looks about the same in h265, 31 in vp9.",
    )
    scale: str | None = Field(
        default=None,
        description='Output size as "width:height" in pixels, e.g. "1280:-2"; -1 or -2 on one'
        " side keeps the aspect ratio (both give an even size). Sizes must be even. Default:"
        " the source's size (an odd width or height loses its last pixel column or row).",
    )
    fps: float | None = Field(
        default=None,
        gt=0,
        le=240,
        description="Output frame rate (frames are dropped or repeated); default: the source's.",
    )
    preset: str = Field(
        default="medium",
        description="Encoder speed, an x264 preset from ultrafast to placebo: slower makes"
        " smaller files at the same crf. vp9 maps it to its deadline and cpu-used settings.",
    )
    audio: bool = Field(
        default=True, description="Keep the first audio track (re-encoded); false drops it."
    )

    @field_validator("scale")
    @classmethod
    def _scale_format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _SCALE.match(value.strip())
        if match is None:
            msg = (
                f'scale {value!r} is not "width:height"; use positive pixel sizes or -2 for'
                ' the side that keeps the aspect ratio, e.g. "1280:-2" or "-2:720"'
            )
            raise ValueError(msg)
        sides = [int(side) for side in match.groups()]
        if all(side < 0 for side in sides):
            msg = f'scale {value!r} gives no size; set at least one side, e.g. "1280:-2"'
            raise ValueError(msg)
        if any(side > 0 and side % 2 for side in sides):
            msg = (
                f"scale {value!r} has an odd size; H.264, H.265 and VP9 in yuv420p need even"
                " widths and heights"
            )
            raise ValueError(msg)
        return value.strip()

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in X264_PRESETS:
            msg = f"unknown preset {value!r}; use one of {', '.join(X264_PRESETS)}"
            raise ValueError(msg)
        return value


class VideoThumbnailParams(BaseModel):
    """Parameters of ``video.thumbnail``."""

    model_config = _CONFIG

    src: FileParam = Field(description="The video to take a still from: a reference.")
    at: float = Field(
        default=0,
        description="Time of the frame in seconds, 0 or more; past the end means the last frame.",
    )
    format: Literal["png", "jpeg"] = Field(
        default="jpeg", description="jpeg (small, lossy) or png (lossless)."
    )
    width: int | None = Field(
        default=None,
        gt=0,
        le=8192,
        description="Width in pixels, keeping the aspect ratio; default: the video's.",
    )


class VideoGifParams(BaseModel):
    """Parameters of ``video.gif``."""

    model_config = _CONFIG

    src: FileParam = Field(description="The video to turn into a GIF: a reference.")
    start: float = Field(default=0, ge=0, description="Where the GIF starts, in seconds.")
    duration: float = Field(
        default=3, gt=0, le=60, description="Length in seconds (less if the video ends first)."
    )
    width: int = Field(
        default=320, gt=0, le=1920, description="Width in pixels; the height keeps the aspect."
    )
    fps: float = Field(default=12, gt=0, le=50, description="Frames per second of the GIF.")


class VideoConcatParams(BaseModel):
    """Parameters of ``video.concat``."""

    model_config = _CONFIG

    videos: list[FileParam] = Field(
        description="Two or more videos, played one after the other, as a list of references."
    )
    width: int | None = Field(
        default=None,
        gt=0,
        le=8192,
        multiple_of=2,
        description="Output width in pixels (even); default: the first video's. Clips of"
        " another shape are scaled to fit and padded with black.",
    )
    height: int | None = Field(
        default=None,
        gt=0,
        le=8192,
        multiple_of=2,
        description="Output height in pixels (even); default: the first video's.",
    )
    fps: float | None = Field(
        default=None, gt=0, le=240, description="Output frame rate; default: the first video's."
    )
    audio: bool = Field(
        default=True,
        description="Join the audio too; clips without sound get silence. No audio track is"
        " made when no clip has sound.",
    )


class VideoAudioParams(BaseModel):
    """Parameters of ``video.audio``."""

    model_config = _CONFIG

    src: FileParam = Field(description="The video whose sound to change: a reference.")
    mode: Literal["keep", "replace", "strip"] = Field(
        description="keep the video's own sound, replace it with `audio`, or strip all sound."
        " The picture is copied untouched in every mode."
    )
    audio: FileParam | None = Field(
        default=None,
        description="The new sound for mode: replace, a reference to an audio file or a video"
        " with sound (its first audio track is used); ignored by the other modes.",
    )
    shortest: bool = Field(
        default=True,
        description="With mode: replace, end at the shorter of picture and sound; false keeps"
        " the longer (the picture freezes or the sound stops).",
    )
