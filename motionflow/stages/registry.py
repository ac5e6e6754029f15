"""Finding stage kinds: built-ins by name, third-party ones through entry points, lazily."""

from __future__ import annotations

import difflib
import importlib
from functools import cache
from typing import cast

from motionflow.stages.base import Stage

__all__ = ["ENTRY_POINT_GROUP", "UnknownStageKind", "get_stage", "known_kinds"]

ENTRY_POINT_GROUP = "motionflow.stages"

# Built-ins are imported by path so that an unused kind costs no import time.
_BUILTINS = {
    "prompt": "motionflow.stages.prompt:PromptStage",
    "python": "motionflow.stages.python:PythonStage",
    "kling.motion_control": "motionflow.stages.kling:MotionControlStage",
    "video.prepare": "motionflow.stages.video_prepare:VideoPrepareStage",
    "image.prepare": "motionflow.stages.image_prepare:ImagePrepareStage",
    "media.check": "motionflow.stages.check:MediaCheckStage",
    "video.transcode": "motionflow.stages.post:VideoTranscodeStage",
    "video.thumbnail": "motionflow.stages.post:VideoThumbnailStage",
    "video.gif": "motionflow.stages.post:VideoGifStage",
    "video.concat": "motionflow.stages.post:VideoConcatStage",
    "video.audio": "motionflow.stages.post:VideoAudioStage",
    "video.compare": "motionflow.stages.compare:VideoCompareStage",
}


class UnknownStageKind(LookupError):  # noqa: N818 - becomes a located recipe Diagnostic
    """No stage kind has this name; the message lists the close ones."""


def _load(target: str) -> Stage:
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cast(Stage, cls())


@cache
def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_kinds() -> list[str]:
    """Every stage kind available: built-ins and installed plugins."""
    return sorted({*_BUILTINS, *_entry_points()})


@cache
def get_stage(kind: str) -> Stage:
    """Return the (shared, stateless) stage object for ``kind``.

    Raises:
        UnknownStageKind: with a "did you mean" and the list of known kinds.
    """
    target = _BUILTINS.get(kind) or _entry_points().get(kind)
    if target is None:
        kinds = known_kinds()
        close = difflib.get_close_matches(kind, kinds, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        msg = (
            f"unknown stage kind {kind!r}; {hint}known kinds: {', '.join(kinds)}. "
            f"Third-party kinds register under the {ENTRY_POINT_GROUP!r} entry point group"
        )
        raise UnknownStageKind(msg)
    stage = _load(target)
    if not isinstance(stage, Stage):
        msg = f"stage kind {kind!r} ({target}) does not implement the Stage protocol"
        raise UnknownStageKind(msg)
    return stage
