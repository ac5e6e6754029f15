"""The ``kling.motion_control`` stage: a character image performs a reference video's motion."""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from motionflow.errors import UsageError
from motionflow.providers.pricing import billable_seconds, price_table
from motionflow.stages.base import (
    BaseStage,
    Estimate,
    FileArtifact,
    FileParam,
    OutputKind,
    StageContext,
    StageResult,
)

__all__ = ["MODEL_ID", "MotionControlParams", "MotionControlStage", "orientation_cap"]

MODEL_ID = "kling-v3-motion-control"
PROMPT_MAX = 2500
_CAPS = {"image": 10.0, "video": 30.0}


def orientation_cap(orientation: str) -> float:
    """Longest output the model makes for a ``character_orientation``: 10 s image, 30 s video."""
    return _CAPS[orientation]


class MotionControlParams(BaseModel):
    """Parameters of ``kling.motion_control`` (the EmpirioLabs submit body)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False
    )

    image: FileParam = Field(description="The character: a reference like ${stages.still.image}.")
    video: FileParam = Field(description="The motion source: a reference to a video.")
    prompt: str = Field(description=f"What the scene looks like; 1..{PROMPT_MAX} characters.")
    mode: Literal["std", "pro"] = Field(default="std", description="std = 720p, pro = 1080p.")
    character_orientation: Literal["image", "video"] = Field(
        default="image",
        description="image: keep the image's pose (max 10 s); video: follow the video (max 30 s).",
    )
    duration: float = Field(default=5, ge=1, le=30, description="Seconds of output, 1..30.")
    keep_original_sound: bool = Field(default=True, description="Keep the reference audio.")

    @field_validator("prompt")
    @classmethod
    def _prompt_length(cls, value: str) -> str:
        if not value.strip():
            msg = "the prompt is empty; the model needs a description of the scene"
            raise ValueError(msg)
        if len(value) > PROMPT_MAX:
            msg = (
                f"the prompt is {len(value)} characters; the model takes at most {PROMPT_MAX}."
                " Shorten the template"
            )
            raise ValueError(msg)
        return value

    @field_validator("duration")
    @classmethod
    def _duration_cap(cls, value: float, info: ValidationInfo) -> float:
        # character_orientation is declared (so validated) before duration
        orientation = info.data.get("character_orientation", "image")
        cap = orientation_cap(orientation)
        if value > cap:
            msg = (
                f"{value:g} s is over the {cap:g} s cap of character_orientation: {orientation};"
                f" use duration <= {cap:g}"
                + (" or character_orientation: video (up to 30 s)" if cap < 30 else "")
            )
            raise ValueError(msg)
        return value


@cache
def _video_seconds(digest: str, path: str) -> float:
    del digest  # the cache key: the same content has the same length wherever it lies
    from pathlib import Path

    from motionflow.media.probe import probe

    return probe(Path(path)).duration


@cache
def _preflight(
    image_digest: str, image: str, video_digest: str, video: str, orientation: str
) -> list[tuple[str, str]]:
    del image_digest, video_digest  # the memo key: same content, same verdict
    from pathlib import Path

    from motionflow.media.rules import check_image, check_video

    found = [("image", v.message()) for v in check_image(Path(image))]
    found += [("video", v.message()) for v in check_video(Path(video), orientation=orientation)]
    return found


class MotionControlStage(BaseStage):
    """Generate a motion-control video through the recipe's provider."""

    kind: ClassVar[str] = "kling.motion_control"
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = MotionControlParams
    outputs: ClassVar[dict[str, OutputKind]] = {"video": "file"}
    takes_allowed: ClassVar[bool] = True
    paid: ClassVar[bool] = True

    def environment(self, params: BaseModel, provider: str) -> dict[str, Any]:
        """Model id and provider identity: a simulated video never answers a paid request."""
        del params
        return {"model": MODEL_ID, "provider": provider}

    def estimate(self, params: BaseModel, provider: str) -> Estimate:
        """``min(ceil(reference seconds), duration, cap)`` seconds at the mode's price."""
        del provider
        # While planning, ``video`` may still be unknown (an earlier stage makes it): then the
        # estimate is the bound min(duration, cap) and is marked inexact.
        video = getattr(params, "video", None)
        reference = (
            _video_seconds(video.digest, str(video.path))
            if isinstance(video, FileArtifact) and video.path.is_file()  # not fetched yet
            else None
        )
        # A setting that an earlier stage produces is not known yet: assume the dearest.
        duration = getattr(params, "duration", 5)
        orientation = getattr(params, "character_orientation", "image")
        mode = getattr(params, "mode", "std")
        exact = reference is not None
        if not isinstance(duration, int | float):
            duration, exact = 30.0, False
        if orientation not in _CAPS:
            orientation, exact = "video", False
        if mode not in ("std", "pro"):
            mode, exact = "pro", False
        seconds = billable_seconds(reference, float(duration), orientation_cap(orientation))
        return Estimate(usd=price_table().usd(mode, seconds), seconds=seconds, exact=exact)

    def preflight(self, params: BaseModel, memo: Any = None) -> list[tuple[str, str]]:
        """The model's media rules, checked locally before anything is uploaded or paid for.

        Then both references are decoded whole (once per content digest): a truncated or
        corrupt file passes the rules, which read only its header, and would still be paid for.

        Args:
            params: the instance's parameters.
            memo: the cache's key-value table (``get``/``set``), to remember across runs that
                a file decodes whole; without it, only this process remembers.

        Returns:
            ``(parameter, message)`` for every violation (all of them, not just the first).

        Raises:
            MediaError: a file cannot be read as media at all.
        """
        assert isinstance(params, MotionControlParams)
        from motionflow.media.integrity import check_decodes

        found = list(
            _preflight(
                params.image.digest,
                str(params.image.path),
                params.video.digest,
                str(params.video.path),
                params.character_orientation,
            )
        )
        image = check_decodes(params.image.path, params.image.digest, kind="image", memo=memo)
        video = check_decodes(params.video.path, params.video.digest, kind="video", memo=memo)
        found += [
            (name, problem) for name, problem in (("image", image), ("video", video)) if problem
        ]
        return found

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Publish the references, submit (or resume) the job, wait, and download the video.

        Both providers go through the real HTTP client; ``simulate`` talks to the fake server
        the session starts on loopback.

        Raises:
            ProviderError: the job failed, is in doubt or lost, or the service refused it.
        """
        assert isinstance(params, MotionControlParams)
        from motionflow.providers.session import GenerationSession, JobSpec

        session = ctx.session
        if not isinstance(session, GenerationSession):
            msg = "kling.motion_control needs the run's provider session (run it with motionflow)"
            raise UsageError(msg)
        estimate = self.estimate(params, ctx.provider)
        spec = JobSpec(
            key=ctx.key,
            stage=ctx.stage,
            label=ctx.label,
            recipe=ctx.recipe,
            image=params.image,
            video=params.video,
            prompt=params.prompt,
            mode=params.mode,
            character_orientation=params.character_orientation,
            duration=params.duration,
            keep_original_sound=params.keep_original_sound,
            estimated_usd=estimate.usd,
        )
        done = await session.generate(spec, ctx.workdir)
        record = done.record
        table = price_table()

        def stored(cache_record: dict[str, Any]) -> None:
            session.stored(record, cache_record["outputs"]["video"]["file"])

        return StageResult(
            {"video": done.path},
            meta={
                "provider": ctx.provider,
                "model": MODEL_ID,
                "job_id": record.job_id,
                "rendered_prompt": params.prompt,
                "billed_seconds": record.billed_seconds or estimate.seconds,
                "estimated_usd": estimate.usd,
                "actual_usd": 0.0 if session.free else record.actual_usd,
                "price_table_as_of": table.as_of,
                "simulated": session.free,
                "resumed": done.resumed,
            },
            on_stored=stored,
        )
