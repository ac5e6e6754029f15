"""The one exception tree of motionflow; every error a user can see is one of these.

::

    MotionflowError                  exit 1 unless a subclass says otherwise
    ├── UsageError                   exit 2  bad flag, option or environment variable
    ├── RecipeError                  exit 2  recipe problems, each a located Diagnostic
    ├── InputError                   exit 2  a recipe input is missing, unreadable or off its pin
    ├── MediaError                   exit 2  unreadable media, or media that breaks a rule
    │   └── ToolNotFoundError        exit 2  no usable ffmpeg binary
    ├── CacheError                   exit 2  the cache directory is unusable (path, permissions)
    ├── StageError                   exit 1  a stage failed while running
    ├── ProviderError                exit 1  a generation provider failed
    │   └── PublishError             exit 1  a local file could not be published as a URL
    └── BudgetError                  exit 3  the plan costs more than the budget allows

Third-party exceptions (yaml, pydantic, jinja2, diskcache, httpx, av, ffmpeg) are translated
at the boundary with ``raise X(...) from exc``; ``tests/test_errors.py`` keeps the mapping honest.
Messages are built before ``raise`` and say what happened, to which item, why, and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BudgetError",
    "CacheError",
    "Diagnostic",
    "InputError",
    "MediaError",
    "MotionflowError",
    "ProviderError",
    "PublishError",
    "RecipeError",
    "StageError",
    "ToolNotFoundError",
    "UsageError",
]


class MotionflowError(Exception):
    """Root of every error motionflow raises on purpose."""

    exit_code: int = 1


class UsageError(MotionflowError):
    """A command-line flag, option or environment variable is wrong."""

    exit_code = 2


@dataclass(frozen=True)
class Diagnostic:
    """One located problem in a recipe.

    Attributes:
        message: what is wrong and what to change.
        file: the recipe (or included) file, as the user named it.
        line: 1-based line, or 0 when the problem has no single place.
        column: 1-based column, or 0.
        source_line: the text of that line, shown under the message.
        severity: ``"error"`` or ``"warning"``.
    """

    message: str
    file: str
    line: int = 0
    column: int = 0
    source_line: str = ""
    severity: str = "error"

    def render(self) -> str:
        """Return the diagnostic as ``file:line:col: error: message`` plus the line and a caret."""
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column or 1}"
        text = f"{where}: {self.severity}: {self.message}"
        if self.source_line:
            caret = " " * max(self.column - 1, 0) + "^"
            text += f"\n    {self.source_line}\n    {caret}"
        return text


@dataclass
class RecipeError(MotionflowError):
    """A recipe is invalid; carries every problem found, not just the first."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    exit_code = 2

    def __post_init__(self) -> None:
        self.diagnostics.sort(key=lambda d: (d.file, d.line, d.column))
        super().__init__(self.__str__())

    def __str__(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        head = f"{len(errors)} problem{'s' if len(errors) != 1 else ''} in the recipe"
        return head + ":\n" + "\n".join(d.render() for d in self.diagnostics)


class InputError(MotionflowError):
    """A recipe input (local file or pinned URL) is missing, unreadable or not what was pinned."""

    exit_code = 2


class MediaError(MotionflowError):
    """Media that cannot be decoded, or that breaks one of the model's media rules."""

    exit_code = 2


class ToolNotFoundError(MediaError):
    """No usable ffmpeg binary was found."""


class CacheError(MotionflowError):
    """The cache directory cannot be used (a file in the way, permissions, a broken index)."""

    exit_code = 2


class StageError(MotionflowError):
    """A stage instance failed while running."""


class ProviderError(MotionflowError):
    """A generation provider failed (network, service error, failed job)."""


class PublishError(ProviderError):
    """A local file could not be made fetchable (publisher unreachable, misconfigured)."""


class BudgetError(MotionflowError):
    """The plan would spend more than the budget allows."""

    exit_code = 3
