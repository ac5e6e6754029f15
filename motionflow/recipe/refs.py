"""``${inputs.NAME}`` and ``${stages.NAME.FIELD}`` references, parsed statically into DAG edges."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["REF_PATTERN", "Ref", "RefSyntaxError", "find_refs", "unescape"]

#: ``$${`` is a literal ``${``; anything else inside ``${...}`` must be a reference.
REF_PATTERN = re.compile(r"\$\$\{|\$\{([^{}]*)\}")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_INPUT = re.compile(rf"^inputs\.({_NAME})$")
_STAGE = re.compile(rf"^stages\.({_NAME})\.({_NAME})$")


@dataclass(frozen=True)
class Ref:
    """A reference to a recipe input or to an output field of another stage."""

    scope: str
    name: str
    field: str | None = None

    def __str__(self) -> str:
        tail = f".{self.field}" if self.field else ""
        return f"${{{self.scope}.{self.name}{tail}}}"


@dataclass(frozen=True)
class RefSyntaxError:
    """A ``${...}`` that is not a reference; ``offset`` is where it starts in the string."""

    text: str
    offset: int


def find_refs(text: str) -> list[tuple[Ref | RefSyntaxError, int, int]]:
    """Return every reference in ``text`` with its start and end offsets."""
    found: list[tuple[Ref | RefSyntaxError, int, int]] = []
    for match in REF_PATTERN.finditer(text):
        body = match.group(1)
        if body is None:  # "$${" escape
            continue
        body = body.strip()
        if m := _INPUT.match(body):
            found.append((Ref("inputs", m.group(1)), match.start(), match.end()))
        elif m := _STAGE.match(body):
            found.append((Ref("stages", m.group(1), m.group(2)), match.start(), match.end()))
        else:
            found.append(
                (RefSyntaxError(match.group(0), match.start()), match.start(), match.end())
            )
    return found


def unescape(text: str) -> str:
    """Turn ``$${`` escapes into literal ``${``."""
    return text.replace("$${", "${")
