"""Running a plan: the executor, its backend seam, the paid-job side, and the run's result."""

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
