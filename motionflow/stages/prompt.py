"""The ``prompt`` stage: a rendered template becomes a text artifact, known while planning."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from motionflow.stages.base import BaseStage, OutputKind

__all__ = ["PromptParams", "PromptStage"]


class PromptParams(BaseModel):
    """Parameters of ``prompt``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str = Field(
        min_length=1,
        description="Jinja2 text rendered with vars and the variant's matrix values. Leading and"
        " trailing white space is dropped, so a reflowed template that renders the same text"
        " keeps its cache key.",
    )

    @field_validator("template")
    @classmethod
    def _strip(cls, value: str) -> str:
        # stripped before keying: surrounding white space never changes the prompt
        if not value.strip():
            msg = "the template renders to nothing but white space"
            raise ValueError(msg)
        return value.strip()


class PromptStage(BaseStage):
    """Render a prompt. Static: its text is known (and keyed) before anything runs."""

    kind: ClassVar[str] = "prompt"
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]] = PromptParams
    outputs: ClassVar[dict[str, OutputKind]] = {"text": "value"}
    static: ClassVar[bool] = True

    def needs_workdir(self, params: BaseModel) -> bool:  # noqa: ARG002
        """It returns a value and writes no file: no work folder to make and remove."""
        return False

    def evaluate(self, params: BaseModel) -> dict[str, Any]:
        """Return ``{"text": ...}``, the rendered template without surrounding white space."""
        assert isinstance(params, PromptParams)
        return {"text": params.template}
