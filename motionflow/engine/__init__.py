"""Running a plan: the executor, its backend seam, the paid-job side, and the run's result.

The names below load on first use: ``cache ls`` needs :mod:`motionflow.engine.references`
without the HTTP client that the paid side imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "Backend": "backend",
    "Generations": "generation",
    "GenerationsFactory": "generation",
    "LocalBackend": "backend",
    "RunResult": "result",
    "execute": "run",
    "open_generations": "generation",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
