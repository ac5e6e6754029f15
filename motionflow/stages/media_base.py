"""Shared base of the ffmpeg stages: ffmpeg's version is part of their keys."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from motionflow.stages.base import BaseStage

__all__ = ["MediaStage"]


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
