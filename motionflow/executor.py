"""Where ``execute`` and ``RunResult`` lived before :mod:`motionflow.engine`: an alias of it."""

from __future__ import annotations

from typing import Any

from motionflow import engine as _engine

__all__ = _engine.__all__


def __getattr__(name: str) -> Any:
    return getattr(_engine, name)  # loaded on first use, as engine's own names are
