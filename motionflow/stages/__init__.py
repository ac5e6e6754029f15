"""Stage kinds: the protocol, the registry and the built-in kinds."""

from motionflow.stages.base import (
    BaseStage,
    Estimate,
    FileArtifact,
    Stage,
    StageContext,
    StageResult,
)
from motionflow.stages.registry import get_stage, known_kinds

__all__ = [
    "BaseStage",
    "Estimate",
    "FileArtifact",
    "Stage",
    "StageContext",
    "StageResult",
    "get_stage",
    "known_kinds",
]
