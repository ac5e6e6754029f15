"""The executor's public names, kept where the CLI and tests import them (see motionflow.engine)."""

from __future__ import annotations

from motionflow.engine.backend import Backend, LocalBackend
from motionflow.engine.generation import Generations, GenerationsFactory, open_generations
from motionflow.engine.result import RunResult
from motionflow.engine.run import execute

__all__ = [
    "Backend",
    "Generations",
    "GenerationsFactory",
    "LocalBackend",
    "RunResult",
    "execute",
    "open_generations",
]
