"""Shared base of the ffmpeg stages: ffmpeg's version is part of their keys."""

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

    Its key holds the first line of ``ffmpeg -version``: another ffmpeg may encode other bytes.
    """

    kind: ClassVar[str] = ""

    def environment(self, params: BaseModel, provider: str) -> dict[str, Any]:
        """The ffmpeg version that will make the bytes."""
        del params, provider
        from motionflow.media.ffmpeg import ffmpeg_version, find_ffmpeg

        return {"ffmpeg": ffmpeg_version(find_ffmpeg())}

    def watched_files(self, params: dict[str, Any]) -> list[Path]:
        """The ffmpeg binary (for the no-op fast path's stamp)."""
        del params
        from motionflow.media.ffmpeg import find_ffmpeg

        binary = find_ffmpeg()
        resolved = shutil.which(binary) or binary
        return [Path(resolved)]
