"""The ``media.check`` stage and ``preflight``: every media-rule violation, before any spend."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from motionflow.errors import MediaError
from motionflow.media.probe import probe
from motionflow.media.rules import (
    MB,
    RULES,
    Violation,
    check_image,
    check_video,
    display_size,
    stream_details,
)
from motionflow.media.scenes import longest_clean_span, scene_cuts
from motionflow.stages.base import OutputKind, StageContext, StageResult
from motionflow.stages.media_base import MediaFileParam, MediaStage

__all__ = ["MediaCheckParams", "MediaCheckStage", "preflight", "render_violations"]


async def preflight(image: Path | None, video: Path | None, orientation: str) -> list[Violation]:
    """Check a generation's reference image and video against the model's media rules.

    The engine calls this before any paid stage; it reads headers and one frame per file, and
    runs no scene detection.

    Args:
        image: the character image, if any.
        video: the reference video, if any.
        orientation: the generation's ``character_orientation`` (``image`` or ``video``).

    Returns:
        Every violation of both files; empty when they can be sent.

    Raises:
        MediaError: a file is missing, unreadable, or (the video) has no video stream.
    """
    found: list[Violation] = []
    if image is not None:
        found += await asyncio.to_thread(check_image, image)
    if video is not None:
        found += await asyncio.to_thread(check_video, video, orientation=orientation)
    return found


def render_violations(found: list[Violation]) -> str:
    """One message for many violations: a count, then one violation per line."""
    head = f"{len(found)} media rule violation{'s' if len(found) != 1 else ''}:"
    return "\n".join([head, *(f"  - {v.message()}" for v in found)])


class MediaCheckParams(BaseModel):
    """Parameters of ``media.check``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False
    )

    image: MediaFileParam | None = Field(
        default=None, description="The character image to check: a reference to a file."
    )
    video: MediaFileParam | None = Field(
        default=None, description="The reference video to check: a reference to a file."
    )
    orientation: Literal["image", "video"] = Field(
        default="video",
        description="The generation's character_orientation; sets the video's length cap"
        " (image: 10 s, video: 30 s).",
    )
    scene_threshold: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="Scene-change score (0..1) above which a frame counts as a cut; lower finds"
        " softer transitions. Cuts are warnings: the model works best with one shot.",
    )

    @model_validator(mode="after")
    def _something(self) -> MediaCheckParams:
        if self.image is None and self.video is None:
            msg = "give image, video, or both"
            raise ValueError(msg)
        return self


class MediaCheckStage(MediaStage):
    """Check media against the model's rules: every violation is an error, listed at once.

    When nothing is broken, ``report`` holds the measurements and warnings: scene cuts with
    the longest clean span to trim to, rotation metadata, pixel format, HDR, transparency.
    """

    kind: ClassVar[str] = "media.check"
    # 2: ffmpeg's version left the key (recorded in `tools` instead): re-runs once, free
    version: ClassVar[str] = "2"
    Params: ClassVar[type[BaseModel]] = MediaCheckParams
    outputs: ClassVar[dict[str, OutputKind]] = {"report": "value"}

    def needs_workdir(self, params: BaseModel) -> bool:  # noqa: ARG002
        """It returns a report and writes no file: no work folder to make and remove."""
        return False

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Raise :class:`MediaError` listing every violation, else return the report."""
        del ctx
        assert isinstance(params, MediaCheckParams)
        image = params.image.path if params.image is not None else None
        video = params.video.path if params.video is not None else None
        found = await preflight(image, video, params.orientation)
        if found:
            msg = "media.check: " + render_violations(found)
            raise MediaError(msg)
        warnings: list[str] = []
        report: dict[str, Any] = {}
        if image is not None:
            report["image"] = await asyncio.to_thread(_image_report, image, warnings)
        if video is not None:
            report["video"] = await _video_report(video, params.scene_threshold, warnings)
        report["warnings"] = warnings
        return StageResult({"report": report})


def _image_report(path: Path, warnings: list[str]) -> dict[str, Any]:
    info = probe(path)
    details = stream_details(path)
    width, height = display_size(info)
    name = repr(str(path))
    if info.rotation:
        warnings.append(
            f"{name} is shown rotated by {info.rotation}° (EXIF orientation), which a service "
            "may ignore. Fix: image.prepare applies the rotation"
        )
    if details.pix_fmt and details.pix_fmt.startswith(("rgba", "ya", "yuva", "pal8", "bgra")):
        warnings.append(
            f"{name} may have transparency ({details.pix_fmt}); the model may see it as black."
            " Fix: image.prepare with format: jpeg (or a pad_color) flattens it"
        )
    return {
        "format": "png" if info.video_codec == "png" else "jpeg",
        "width": width,
        "height": height,
        "ratio": round(width / height, 3),
        "mb": round(path.stat().st_size / MB, 3),
        "pix_fmt": details.pix_fmt,
        "rotation": info.rotation,
    }


async def _video_report(path: Path, threshold: float, warnings: list[str]) -> dict[str, Any]:
    info = await asyncio.to_thread(probe, path)
    details = await asyncio.to_thread(stream_details, path)
    cuts = await scene_cuts(path, threshold)
    width, height = display_size(info)
    name = repr(str(path))
    span = longest_clean_span(cuts, info.duration)
    if cuts:
        times = ", ".join(f"{t:.2f} s" for t in cuts)
        length = span[1] - span[0]
        if length >= RULES.video_min_seconds:
            advice = (
                f"the longest continuous shot is {span[0]:.2f}..{span[1]:.2f} s "
                f"({length:.2f} s): video.prepare with start: {span[0]:.2f}, "
                f"duration: {length:.2f} keeps only it"
            )
        else:
            advice = (
                f"no shot is {RULES.video_min_seconds:g} s or longer (the longest is "
                f"{span[0]:.2f}..{span[1]:.2f} s); a clip with one longer shot works better"
            )
        warnings.append(
            f"{name} has {len(cuts)} scene cut{'s' if len(cuts) != 1 else ''} at {times}; "
            f"the model works best with one continuous shot: {advice}"
        )
    if info.rotation:
        warnings.append(
            f"{name} carries a {info.rotation}° display rotation, which a service may ignore."
            " Fix: video.prepare applies it"
        )
    if details.pix_fmt not in (None, "yuv420p"):
        warnings.append(
            f"{name} uses pixel format {details.pix_fmt}; not every decoder takes it. "
            "Fix: video.prepare encodes yuv420p"
        )
    if details.hdr:
        warnings.append(f"{name} is HDR (PQ/HLG); the model may render its colours flat or clipped")
    if details.sar != 1:
        warnings.append(
            f"{name} has non-square pixels (aspect {details.sar}). Fix: video.prepare squares them"
        )
    return {
        "container": info.format_name,
        "codec": info.video_codec,
        "pix_fmt": details.pix_fmt,
        "width": width,
        "height": height,
        "fps": round(info.fps, 3),
        "duration": round(info.duration, 3),
        "mb": round(path.stat().st_size / MB, 3),
        "has_audio": info.has_audio,
        "rotation": info.rotation,
        "scene_cuts": [round(t, 3) for t in cuts],
        "longest_clean_span": [round(span[0], 3), round(span[1], 3)],
    }
