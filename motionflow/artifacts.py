"""Artifacts: the files and costs stages exchange, known to every layer below the engine.

A :class:`FileArtifact` is content-addressed: only its digest enters cache keys, and the path is
where the bytes happen to be right now. An :class:`Estimate` is what running an instance costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import WithJsonSchema

__all__ = ["Estimate", "FileArtifact", "FileParam", "OutputKind"]

OutputKind = Literal["file", "value"]


class FileArtifact:
    """A file a stage consumes: its content digest, where to read it, and its extension.

    Only the digest enters cache keys; the path is where the bytes happen to be right now.
    """

    __slots__ = ("digest", "ext", "path")

    def __init__(self, digest: str, path: Path, ext: str) -> None:
        self.digest = digest
        self.path = path
        self.ext = ext

    def __repr__(self) -> str:
        return f"FileArtifact({self.digest[:19]}…{self.ext})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileArtifact) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)


#: A file parameter of a stage model; in a recipe, a ``${inputs.x}``/``${stages.s.f}`` reference.
FileParam = Annotated[
    FileArtifact,
    WithJsonSchema(
        {"type": "string", "pattern": r"^\$\{.+\}$", "description": "a reference to a file"}
    ),
]


@dataclass(frozen=True)
class Estimate:
    """What running an instance is expected to cost.

    Attributes:
        usd: dollars at the provider's price (0 for local stages).
        seconds: billable seconds of generated video, if any.
        exact: False when an input's length is not known yet and ``usd`` is an upper bound.
    """

    usd: float = 0.0
    seconds: float = 0.0
    exact: bool = True
