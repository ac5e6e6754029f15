"""The Stage protocol every stage kind implements.

The values stages exchange live in :mod:`motionflow.artifacts`; they are re-exported here for
stage authors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from motionflow.artifacts import Estimate, FileArtifact, FileParam, OutputKind

__all__ = [
    "BaseStage",
    "Estimate",
    "FileArtifact",
    "FileParam",
    "OutputKind",
    "Stage",
    "StageContext",
    "StageResult",
]


@dataclass
class StageContext:
    """What a running stage may use besides its parameters.

    Attributes:
        workdir: an empty private directory; files the stage returns must be written here.
        stage: the stage's name in the recipe.
        provider: the recipe's provider (``simulate`` or ``empiriolabs``).
        take: the take index (0-based) of this instance.
        label: a human label for the instance (stage, variant), for logs and video captions.
        emit: sends a typed event (job submitted, progress) to the reporter.
        labels: for a stage that gathers ``over: variants``, one human label per gathered
            item (``outfit=red jacket, mode=pro``; `` · take 2`` added with takes), in the
            order of the lists its references resolve to. Empty otherwise.
        key: the instance's cache key (paid stages journal their jobs under it).
        recipe: the recipe's name.
        session: the run's provider session (``providers.session.GenerationSession``) for
            paid stages, created on first use; None for other stages.
    """

    workdir: Path
    stage: str
    provider: str
    take: int
    label: str
    emit: Callable[[Any], None]
    labels: list[str] = field(default_factory=list)
    key: str = ""
    recipe: str = ""
    session: Any = None


@dataclass
class StageResult:
    """Outputs of a finished stage: ``Path`` for file outputs, JSON values otherwise.

    ``meta`` (job id, billed seconds, model, ...) is kept in the cache record and receipts.
    ``on_stored``, if set, is called with the cache record once the outputs are safely in the
    cache (a paid stage marks its journal entry ``stored`` then).
    """

    outputs: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    on_stored: Callable[[dict[str, Any]], None] | None = None


@runtime_checkable
class Stage(Protocol):
    """A stage kind. Register third-party kinds under the ``motionflow.stages`` entry point group.

    Attributes:
        kind: the name recipes use in ``uses:``.
        version: bump it when the same parameters would now produce different bytes.
        Params: the pydantic model of ``with:`` (``extra="forbid"`` so typos are caught).
        outputs: output field name -> ``"file"`` or ``"value"``.
        takes_allowed: whether ``takes: N`` makes sense (non-deterministic stages).
        static: outputs are a pure, cheap function of the parameters and can be computed while
            planning (so a rendered prompt is known, and keyed, before anything runs).
        paid: the stage spends money at a provider.

    Optional methods, looked up with ``getattr`` (a kind without them still registers):
    ``tools(params) -> dict[str, str]``, the versions of the external programs that make the
    bytes (``{"ffmpeg": "ffmpeg version 7.1 ..."}``): recorded in the result, its receipts and
    ``why``, but never part of the key (a teammate's other ffmpeg build must not re-run, and
    so re-pay, anything; ``--rebuild-on-tool-change`` opts in). :class:`BaseStage` returns
    ``{}``. ``needs_workdir(params) -> bool``: False when the instance writes no files, so
    ``ctx.workdir`` is named but not created (``python`` stages without ``outdir``); absent
    means True. Also ``preflight`` and ``watched_files`` (see the media stages).
    """

    kind: ClassVar[str]
    version: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    outputs: ClassVar[Mapping[str, OutputKind]]
    takes_allowed: ClassVar[bool]
    static: ClassVar[bool]
    paid: ClassVar[bool]

    def environment(self, params: BaseModel, provider: str) -> dict[str, Any]:
        """Versions and identities that change the output bytes (go into the key)."""
        ...

    def estimate(self, params: BaseModel, provider: str) -> Estimate:
        """Cost of running this instance."""
        ...

    def evaluate(self, params: BaseModel) -> dict[str, Any]:
        """Outputs of a static stage, computed without running it."""
        ...

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Do the work, writing files under ``ctx.workdir``."""
        ...


class BaseStage:
    """Defaults for the optional parts of :class:`Stage`: free, local, deterministic."""

    kind: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Params: ClassVar[type[BaseModel]]
    outputs: ClassVar[Mapping[str, OutputKind]] = {}
    takes_allowed: ClassVar[bool] = False
    static: ClassVar[bool] = False
    paid: ClassVar[bool] = False

    def environment(self, params: BaseModel, provider: str) -> dict[str, Any]:  # noqa: ARG002
        """No versions beyond the stage kind's own."""
        return {}

    def tools(self, params: BaseModel) -> dict[str, str]:  # noqa: ARG002
        """Versions of the external programs that make the bytes: recorded, never keyed."""
        return {}

    def estimate(self, params: BaseModel, provider: str) -> Estimate:  # noqa: ARG002
        """Local stages are free."""
        return Estimate()

    def evaluate(self, params: BaseModel) -> dict[str, Any]:
        """Only static stages can be evaluated while planning."""
        msg = f"stage kind {self.kind!r} is not static"
        raise NotImplementedError(msg)

    async def run(self, params: BaseModel, ctx: StageContext) -> StageResult:
        """Static stages run by evaluating."""
        del ctx
        return StageResult(self.evaluate(params))
