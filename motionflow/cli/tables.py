"""Tables the CLI prints, fitted to the terminal (80 columns when piped) without splitting ids.

A column says what it holds, and that decides how it may bend: an ``id`` (a job id, a key
prefix, a stage kind, a state) and a ``money`` amount, a ``number`` or an ``age`` never wrap
across lines; only ``text`` wraps. A column can also say the narrowest console that still
shows it (``min_console``) or the widest (``max_console``), so a narrow terminal drops the
least useful columns, or shows a compact stand-in, instead of folding every cell.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["WIDE", "Column", "print_table"]

WIDE = 120
"""Consoles at least this wide show every column; narrower ones (80 when piped) show fewer."""

Kind = Literal["text", "id", "money", "number", "age"]


@dataclass(frozen=True)
class Column:
    """One column of a table.

    Attributes:
        header: the heading (also the column's name in ``print_table``'s rows).
        kind: ``text`` wraps at spaces (folding a word longer than the column); the other
            kinds never wrap: an ``id`` is cut with an ellipsis only when nothing else can
            give way; ``money``, ``number`` and ``age`` are right-aligned.
        min_console: the column is left out on consoles narrower than this.
        max_console: the column is left out on consoles at least this wide (a compact
            stand-in for columns shown only on wide consoles).
        min_width: the narrowest this column may be squeezed to (text columns).
    """

    header: str
    kind: Kind = "text"
    min_console: int = 0
    max_console: int | None = None
    min_width: int | None = None

    def shown(self, width: int) -> bool:
        """True when a console ``width`` columns wide shows this column."""
        return width >= self.min_console and (self.max_console is None or width < self.max_console)


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Iterable[Sequence[RenderableType]],
    *,
    title: str | None = None,
    caption: str | None = None,
    show_header: bool = True,
) -> None:
    """Print ``rows`` (one cell per column of ``columns``) with the columns this console shows."""
    from rich.table import Table

    width = console.width
    keep = [i for i, col in enumerate(columns) if col.shown(width)]
    table = Table(title=title, caption=caption, show_header=show_header)
    for i in keep:
        col = columns[i]
        text = col.kind == "text"
        table.add_column(
            col.header,
            justify="left" if col.kind in {"text", "id"} else "right",
            no_wrap=not text,
            overflow="fold" if text else "ellipsis",
            min_width=col.min_width,
        )
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    console.print(table)
