"""The ``video.prepare`` stage: trim and re-encode a reference video to the model's rules."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import BaseModel

from motionflow.errors import MediaError
from motionflow.events import Warning as WarningEvent
from motionflow.media.encoding import probe_both, raise_violations
from motionflow.media.probe import probe
from motionflow.media.rules import RULES, check_video, display_size
from motionflow.stages.base import OutputKind, StageContext, StageResult
from motionflow.stages.media_base import MediaStage
from motionflow.stages.video_encode import (
    AUDIO_BITRATE,
    X264_CRF,
    X264_PRESET,
    copy_clip,
    copy_cut,
    encode_within,
)
from motionflow.stages.video_plan import VideoPrepareParams, clip_cut, plan_video, probe_clip

__all__ = [
    "AUDIO_BITRATE",
    "X264_CRF",
    "X264_PRESET",
    "VideoPrepareParams",
    "VideoPrepareStage",
]


class VideoPrepareStage(MediaStage):
    """Trim, scale, retime and encode a clip so the model accepts it as a reference video.

    Stream copy is used only when the cut points fall on keyframes and the source already
    meets every rule; otherwise the clip is encoded to H.264 yuv420p MP4 (``+faststart``).
    An interlaced source is deinterlaced (ffmpeg's ``bwdif``, one frame per frame), with a
    warning.
    """

    kind: ClassVar[str] = "video.prepare"
    # 2: ffmpeg's version left the key (recorded in `tools` instead): re-runs once, free
    version: ClassVar[str] = "2"
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
        length = probe_clip(src.digest, src.path)
        if length is None:
            return []
        seconds, fps = length
        try:
            clip_cut(repr(str(src.path)), seconds, 1 / fps if fps > 0 else 1 / 30, params, [])
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
        plan = plan_video(src, info, details, params, warnings)
        if plan.deinterlace:  # the user sees this one now: it changes the picture
            ctx.emit(WarningEvent(warnings[-1] if warnings else "deinterlaced"))
        dest = ctx.workdir / "video.mp4"

        cut = await copy_cut(src, info, details, plan)
        # A copy that does not come out exact (a variable frame rate, an odd edit list) is
        # thrown away and the clip encoded instead.
        copied = cut is not None and await copy_clip(src, dest, cut, plan, details)
        if not copied:
            await encode_within(src, dest, plan, warnings)
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
