"""Every module declares a sorted __all__ of names it really defines (STYLE.md, rule 9)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import motionflow

MODULES = sorted(m.name for m in pkgutil.walk_packages(motionflow.__path__, prefix="motionflow."))


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's __all__ order: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("name", ["motionflow", *MODULES])
def test_all_is_sorted_and_real(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert list(exported) == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which it lacks"
    assert module.__doc__ and module.__doc__.strip(), f"{name} has no module docstring"


def test_public_api() -> None:
    assert motionflow.__all__ == ["__version__", "load_recipe", "plan", "run"]
