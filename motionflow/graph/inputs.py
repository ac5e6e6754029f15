"""Recipe inputs: local files resolved against the recipe's folder, and their problems."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from motionflow.graph.instance import ParamPath
from motionflow.recipe.loader import Recipe
from motionflow.recipe.schema import RemoteInput

__all__ = ["LocalInput", "check_inputs"]


@dataclass(frozen=True)
class LocalInput:
    """A local input file, resolved against the recipe's folder."""

    name: str
    path: Path


def check_inputs(
    recipe: Recipe, problem: Callable[[ParamPath, str], None]
) -> tuple[dict[str, LocalInput | RemoteInput], set[str]]:
    """Resolve every input; report each unusable one through ``problem``.

    Returns:
        The usable inputs by name, and the names of the unusable ones.
    """
    resolved: dict[str, LocalInput | RemoteInput] = {}
    bad: set[str] = set()
    base = recipe.path.parent
    root = recipe.root
    for name, spec in recipe.model.inputs.items():
        if isinstance(spec, RemoteInput):
            resolved[name] = spec
            continue
        where = ("inputs", name)
        try:  # a symlink loop, a path too long or with a NUL: the user's, not a bug
            candidate = Path(spec).expanduser()
            path = (candidate if candidate.is_absolute() else base / candidate).resolve()
            is_file, is_dir = path.is_file(), path.is_dir()
        except (OSError, RuntimeError, ValueError) as exc:
            loop = isinstance(exc, RuntimeError) and "loop" in str(exc).lower()
            cause = "a loop of symbolic links" if loop else exc
            problem(
                where,
                f"input {name!r}: cannot follow the path {spec!r} ({cause}); fix or remove "
                "the symbolic link, or name the file by a plain path relative to the recipe",
            )
            bad.add(name)
            continue
        if not recipe.allow_outside_project and not path.is_relative_to(root):
            problem(
                where,
                f"input {name!r} points outside the project folder {str(root)!r} "
                f"({spec!r} resolves to {str(path)!r}); move the file into the project, or "
                "pass --allow-outside-project if you mean it",
            )
            bad.add(name)
            continue
        if not is_file:
            what = (
                "is a folder"
                if is_dir
                else "is not a regular file (a device, FIFO or socket?); give an image or "
                "video file"
                if path.exists()
                else "does not exist"
            )
            problem(
                where,
                f"input {name!r}: {spec!r} {what} (looked for {str(path)!r}); paths are "
                "relative to the recipe's folder",
            )
            bad.add(name)
            continue
        resolved[name] = LocalInput(name, path)
    return resolved, bad
