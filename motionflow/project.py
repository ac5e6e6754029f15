"""The project folder: where out/ goes and what recipe paths may not leave."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ROOT_MARKERS", "find_project_root"]

ROOT_MARKERS = (".git", "pyproject.toml", "motionflow.toml")


def find_project_root(recipe_dir: Path) -> Path:
    """The nearest folder at or above ``recipe_dir`` holding .git, pyproject.toml or
    motionflow.toml; the recipe's own folder when there is none."""
    for folder in (recipe_dir, *recipe_dir.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return recipe_dir
