"""Shared base of the ffmpeg stages: ffmpeg's version is recorded with their results."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel

from motionflow.media.sniff import SVG_FIX, is_svg, not_media
from motionflow.stages.base import BaseStage, FileArtifact, FileParam

__all__ = ["MediaFileParam", "MediaStage"]


def _decodable(value: FileArtifact) -> FileArtifact:
    """Refuse, when the recipe is checked, a file no ffmpeg stage can read: an SVG, an empty
    file, or text (an HTML page, a Git LFS pointer) under a media file's name."""
    if is_svg(value.path):
        msg = f"{str(value.path)!r} is an SVG drawing. {SVG_FIX}"
        raise ValueError(msg)
    if (why := not_media(value.path)) is not None:
        msg = f"{str(value.path)!r} is not an image or a video: {why}"
        if "Fix:" not in why:
            msg += ". Fix: point the input at the real media file"
        raise ValueError(msg)
    return value


#: A media file parameter: a :data:`FileParam` whose bytes ffmpeg can decode (no SVG).
MediaFileParam = Annotated[FileParam, AfterValidator(_decodable)]


class MediaStage(BaseStage):
    """A local, free stage that makes media with ffmpeg (and probes with PyAV).

    The first line of ``ffmpeg -version`` is recorded with each result (:meth:`tools`) but is
    not part of the key: a teammate with another ffmpeg build reuses the team's results (and
    so the paid generations made from them) instead of re-running everything. Each subclass's
    ``version`` was bumped once when ffmpeg left the key (docs/caching.md, "Tool versions").
    """

    kind: ClassVar[str] = ""

    def environment(self, params: BaseModel, provider: str) -> dict[str, Any]:
        """Nothing beyond the kind's version: ffmpeg's version is recorded, not keyed."""
        del params, provider
        return {}

    def tools(self, params: BaseModel) -> dict[str, str]:
        """``{"ffmpeg": <first line of ffmpeg -version>}``: recorded, never keyed.

        ``"unknown"`` when no usable ffmpeg is found (the stage itself then fails, saying why).
        """
        del params
        from motionflow.errors import ToolNotFoundError
        from motionflow.media.ffmpeg import ffmpeg_version, find_ffmpeg

        try:
            return {"ffmpeg": ffmpeg_version(find_ffmpeg())}
        except ToolNotFoundError:
            return {"ffmpeg": "unknown"}

    def watched_files(self, params: dict[str, Any]) -> list[Path]:
        """The ffmpeg binary (for the no-op fast path's stamp)."""
        del params
        from motionflow.media.ffmpeg import find_ffmpeg

        binary = find_ffmpeg()
        resolved = shutil.which(binary) or binary
        return [Path(resolved)]
