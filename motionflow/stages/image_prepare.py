"""The ``image.prepare`` stage: bring a character image within the model's rules."""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from motionflow.errors import MediaError
from motionflow.media.encoding import (
    BITEXACT,
    probe_both,
    raise_violations,
    rotation_filters,
)
from motionflow.media.ffmpeg import escape_filter_value, ffmpeg_path, run_ffmpeg
from motionflow.media.probe import probe
from motionflow.media.rules import MB, RULES, check_image, display_size
from motionflow.media.sniff import is_animated_webp
from motionflow.stages.base import OutputKind, StageContext, StageResult
from motionflow.stages.media_base import MediaFileParam, MediaStage

__all__ = ["IMAGE_MAX_SIDE", "ImagePrepareParams", "ImagePrepareStage"]

IMAGE_MAX_SIDE = 4096
"""Longest side of a prepared image; larger photos are downscaled (the model gains nothing)."""
_JPEG_QUALITIES = (2, 5, 10)  # ffmpeg's -q:v, 2 = best; tried before downscaling
# An ffmpeg colour: a name or hex RGB(A), with an optional @alpha; ffmpeg checks the name.
_COLOUR = re.compile(
    r"(?:(?:#|0x)?[0-9A-Fa-f]{6}(?:[0-9A-Fa-f]{2})?|[A-Za-z]+)"  # name, RRGGBB or RRGGBBAA
    r"(?:@(?:[01](?:\.[0-9]+)?|\.[0-9]+))?"  # @alpha, 0..1
)

# --- image.prepare --------------------------------------------------------------------------


class ImagePrepareParams(BaseModel):
    """Parameters of ``image.prepare``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False
    )

    src: MediaFileParam = Field(
        description="The character image: PNG, JPEG, WebP (animated too), BMP, TIFF, GIF, ..."
        " (EXIF orientation is applied; of an animation or a video, the first frame is used)."
        " SVG is refused: convert it to PNG."
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
    # 2: ffmpeg's version left the key (recorded in `tools` instead): re-runs once, free
    version: ClassVar[str] = "2"
    Params: ClassVar[type[BaseModel]] = ImagePrepareParams
    outputs: ClassVar[dict[str, OutputKind]] = {"image": "file", "info": "value"}

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Write ``image.png`` or ``image.jpg`` into the workdir; ``info`` lists what was done."""
        assert isinstance(params, ImagePrepareParams)
        src = params.src.path
        name = repr(str(src))
        operations: list[str] = []
        if is_animated_webp(src):  # ffmpeg decodes it, PyAV (the probe) cannot: a still first
            src = await _first_frame(src, ctx.workdir / "first-frame.png")
            operations.append("took the first frame of an animated WebP")
        info, details = await probe_both(src)
        if not info.has_video:
            msg = (
                f"image.prepare: {name} has no picture (it holds only audio). "
                "Fix: point src at an image."
            )
            raise MediaError(msg)
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
        raise_violations(f"image.prepare's output from {name}", found)
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


async def _first_frame(src: Path, dest: Path) -> Path:
    """Write the first frame of ``src`` as a PNG at ``dest`` (alpha kept) and return it."""
    args = ["-i", ffmpeg_path(src), "-frames:v", "1", "-c:v", "png", *BITEXACT]
    args += ["-f", "image2", "-update", "1", ffmpeg_path(dest)]
    await run_ffmpeg(args, what=f"read the first frame of the animated WebP {str(src)!r}")
    return dest


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
    chain = [*rotation_filters(rotation), "sidedata=mode=delete:type=DISPLAYMATRIX"]
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
    args += ["-frames:v", "1", *codec, "-map_metadata", "-1", *BITEXACT]
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
