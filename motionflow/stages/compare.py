"""The ``video.compare`` stage: labelled videos side by side or in a grid, to judge by eye."""

from __future__ import annotations

import asyncio
import math
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from motionflow.errors import MediaError
from motionflow.media.ffmpeg import escape_filter_value, ffmpeg_path, run_ffmpeg
from motionflow.media.fonts import find_font
from motionflow.media.probe import MediaInfo, probe
from motionflow.stages.base import FileArtifact, FileParam, OutputKind, StageContext, StageResult
from motionflow.stages.media_base import MediaStage

__all__ = ["REFERENCE_LABEL", "VideoCompareParams", "VideoCompareStage", "grid_shape"]

REFERENCE_LABEL = "reference"
"""The caption of the reference tile."""

_ROW_MAX = 3  # layout auto: up to this many tiles in one row, a grid beyond
# Caption bars when no font exists: one colour per tile, so tiles can still be told apart.
_BAR_COLOURS = ("0x1F6FEB", "0xE0115F", "0x2DA44E", "0xBF8700", "0x8250DF", "0x1B7C83")
_REFERENCE_BOX = "0x1F6FEB@0.85"
_LABEL_BOX = "black@0.65"
_CHAR_WIDTH = 0.6  # a sans-serif glyph is at most about 0.6 em wide on average


class VideoCompareParams(BaseModel):
    """Parameters of ``video.compare``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False
    )

    videos: list[FileParam] = Field(
        description="The videos to compare, as references; with over: variants, every"
        " variant's video, gathered in variant order."
    )
    reference: FileParam | None = Field(
        default=None,
        description=f"A video shown first, captioned {REFERENCE_LABEL!r}, such as the motion"
        " reference clip.",
    )
    labels: list[str] | None = Field(
        default=None,
        description="One caption per video (not counting the reference). Default: the variant"
        " names with over: variants, else 1, 2, 3, ...",
    )
    layout: Literal["auto", "row", "grid"] = Field(
        default="auto",
        description="row: all tiles side by side; grid: a near-square grid, filled row by row;"
        f" auto: a row of up to {_ROW_MAX} tiles, else a grid.",
    )
    tile_height: int = Field(
        default=360,
        ge=32,
        le=2160,
        multiple_of=2,
        description="Height of each tile in pixels (even). Videos keep their aspect ratio and"
        " are padded with black to the widest tile's width.",
    )
    duration: Literal["shortest", "longest"] = Field(
        default="longest",
        description="longest: run until the longest video ends, holding the last frame of"
        " shorter ones; shortest: stop when the shortest ends.",
    )
    audio: Literal["none", "reference", "first"] = Field(
        default="none",
        description="Sound of the result: none, the reference's, or the first video's (silent"
        " if that file has none).",
    )


def grid_shape(tiles: int, layout: str) -> tuple[int, int]:
    """Return ``(columns, rows)`` for ``tiles`` tiles in a ``layout``.

    Args:
        tiles: the number of tiles, 1 or more.
        layout: ``"row"``, ``"grid"`` (a near-square grid, never taller than wide), or
            ``"auto"`` (a row of up to 3 tiles, else a grid).

    Returns:
        The number of columns and rows.
    """
    if layout == "row" or (layout == "auto" and tiles <= _ROW_MAX):
        return tiles, 1
    columns = math.ceil(math.sqrt(tiles))
    return columns, math.ceil(tiles / columns)


class VideoCompareStage(MediaStage):
    """Put videos side by side or in a grid, each captioned, in one H.264 file."""

    kind: ClassVar[str] = "video.compare"
    # 2: captions moved to the bottom, off the SIMULATED banner (cheap: sheets are remade once)
    # 3: ffmpeg's version left the key (recorded in `tools` instead): re-runs once, free
    version: ClassVar[str] = "3"
    Params: ClassVar[type[BaseModel]] = VideoCompareParams
    outputs: ClassVar[dict[str, OutputKind]] = {"video": "file", "layout": "value"}

    def environment(self, params: BaseModel, provider: str) -> dict[str, Any]:
        """The caption font's file name (none: coloured bars instead): a content choice, keyed.

        ffmpeg's version is recorded with the result (``tools``), not keyed.
        """
        env = super().environment(params, provider)
        font = find_font()
        env["font"] = Path(font).name if font is not None else None
        return env

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Write ``compare.mp4`` and return the layout (columns, rows, tile size, captions)."""
        assert isinstance(params, VideoCompareParams)
        captions = self._labels(params, ctx)
        tiles = list(params.videos)
        names = [f"videos[{i}]" for i in range(len(tiles))]
        if params.reference is not None:
            tiles.insert(0, params.reference)
            names.insert(0, "reference")
            captions.insert(0, REFERENCE_LABEL)
        if params.audio == "reference" and params.reference is None:
            msg = (
                f"{self.kind}: audio: reference needs a reference video. Fix: add"
                " reference: ${...}, or use audio: first or none."
            )
            raise MediaError(msg)
        infos = await asyncio.gather(
            *(self._probe(tile, name) for tile, name in zip(tiles, names, strict=True))
        )
        font = await asyncio.to_thread(find_font)

        columns, rows = grid_shape(len(tiles), params.layout)
        th = params.tile_height
        tw = max(_tile_width(info, th) for info in infos)
        lengths = [info.duration for info in infos]
        length = max(lengths) if params.duration == "longest" else min(lengths)
        fps = max((info.fps for info in infos), default=0.0) or 25.0
        rate = str(Fraction(fps).limit_denominator(1001))
        size = _font_size(captions, tw, th)

        chains = []
        for i, caption in enumerate(captions):
            style = _caption(caption, i, font=font, size=size, reference=names[i] == "reference")
            chains.append(
                f"[{i}:v]setpts=PTS-STARTPTS,scale=iw*sar:ih,setsar=1,"
                f"scale={tw}:{th}:force_original_aspect_ratio=decrease,"
                f"pad={tw}:{th}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,fps={rate},"
                f"tpad=stop=-1:stop_mode=clone,trim=duration={length:.6f},"
                f"setpts=PTS-STARTPTS,{style}[t{i}]"
            )
        if len(tiles) == 1:
            chains.append("[t0]format=yuv420p[vout]")
        else:
            cells = "|".join(
                f"{(k % columns) * tw}_{(k // columns) * th}" for k in range(len(tiles))
            )
            inputs = "".join(f"[t{i}]" for i in range(len(tiles)))
            chains.append(
                f"{inputs}xstack=inputs={len(tiles)}:layout={cells}:fill=black,format=yuv420p[vout]"
            )
        sound = _sound_input(params, infos)
        if sound is not None:
            chains.append(f"[{sound}:a:0]atrim=duration={length:.6f},asetpts=PTS-STARTPTS[aout]")

        dest = ctx.workdir / "compare.mp4"
        args = [
            *(arg for tile in tiles for arg in ("-i", ffmpeg_path(tile.path))),
            *("-filter_complex", ";".join(chains), "-map", "[vout]"),
            *(("-map", "[aout]", "-c:a", "aac", "-b:a", "160k") if sound is not None else ("-an",)),
            *("-c:v", "libx264", "-preset", "medium", "-crf", "20", "-pix_fmt", "yuv420p"),
            *("-map_metadata", "-1", "-fflags", "+bitexact", "-movflags", "+faststart"),
            *("-f", "mp4", ffmpeg_path(dest)),
        ]
        await run_ffmpeg(args, what=f"compose a comparison of {len(tiles)} videos")
        layout = {
            "columns": columns,
            "rows": rows,
            "tile_width": tw,
            "tile_height": th,
            "labels": captions,
        }
        return StageResult({"video": dest, "layout": layout})

    def _labels(self, params: VideoCompareParams, ctx: StageContext) -> list[str]:
        count = len(params.videos)
        if count == 0:
            msg = (
                f"{self.kind}: videos is empty; there is nothing to compare. Fix: pass one or"
                " more videos, e.g. videos: ${stages.take.video} with over: variants."
            )
            raise MediaError(msg)
        if params.labels is not None:
            labels, origin = list(params.labels), "labels"
        elif ctx.labels:
            labels, origin = list(ctx.labels), "the variant names (from over: variants)"
        else:
            return [str(i + 1) for i in range(count)]
        if len(labels) != count:
            msg = (
                f"{self.kind}: {origin} give {len(labels)} caption(s) for {count} video(s)."
                " Fix: give exactly one label per video in labels: [...] (the reference is"
                f" captioned {REFERENCE_LABEL!r} on its own), or leave labels out."
            )
            raise MediaError(msg)
        return labels

    async def _probe(self, tile: FileArtifact, name: str) -> MediaInfo:
        info = await asyncio.to_thread(probe, tile.path)
        if not info.has_video or info.duration <= 0:
            what = "has no video stream" if not info.has_video else "is a still image"
            msg = f"{self.kind}: {name} {str(tile.path)!r} {what}. Fix: pass a video file."
            raise MediaError(msg)
        return info


def _tile_width(info: MediaInfo, height: int) -> int:
    """Even width of a tile ``height`` pixels high that shows ``info``'s video whole."""
    width, tall = info.width, info.height
    if info.rotation in (90, 270):  # ffmpeg turns the picture upright when it decodes
        width, tall = tall, width
    return max(2, 2 * math.ceil(width * height / tall / 2))


def _font_size(captions: list[str], tile_width: int, tile_height: int) -> int:
    """One size for every caption: a twelfth of the tile, smaller if the longest would not fit."""
    longest = max((len(caption) for caption in captions), default=1) or 1
    fits = (tile_width * 0.9) / (_CHAR_WIDTH * longest)
    return max(8, math.floor(min(tile_height / 12, fits)))


def _caption(text: str, index: int, *, font: str | None, size: int, reference: bool) -> str:
    margin = max(2, round(size / 2))
    if font is None:
        # No font anywhere: a coloured bar per tile instead of text, rather than failing.
        colour = _BAR_COLOURS[index % len(_BAR_COLOURS)]
        # At the bottom, like the captions: the top-left corner is where a simulated video
        # carries its SIMULATED banner, which must stay visible on the sheet.
        bar = round(size * 1.6)
        return f"drawbox=x=0:y=ih-{bar}:w=iw:h={bar}:color={colour}@0.85:t=fill"
    return (
        f"drawtext=fontfile={escape_filter_value(font)}:text={escape_filter_value(text)}"
        f":expansion=none:x={margin}:y=h-th-{margin}:fontsize={size}:fontcolor=white:box=1"
        f":boxcolor={_REFERENCE_BOX if reference else _LABEL_BOX}"
        f":boxborderw={max(2, round(size / 4))}"
    )


def _sound_input(params: VideoCompareParams, infos: list[MediaInfo]) -> int | None:
    """The input index whose first audio track becomes the result's sound, if any."""
    if params.audio == "none":
        return None
    index = 0 if params.audio == "reference" or params.reference is None else 1
    return index if infos[index].has_audio else None
