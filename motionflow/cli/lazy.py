"""A click group whose commands are imported when click first asks for them."""

from __future__ import annotations

import importlib
from typing import ClassVar

import click

__all__ = ["LazyGroup"]


class LazyGroup(click.Group):
    """A group that lists the commands of :attr:`lazy` and imports each one on first use.

    Subclasses set ``lazy``: command name -> ``module:attribute`` of its click command. Nothing
    is imported while the group's module loads, so a command pays only for its own imports.
    """

    lazy: ClassVar[dict[str, str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in self.lazy:
            module, _, name = self.lazy[cmd_name].partition(":")
            found = getattr(importlib.import_module(module), name)
            assert isinstance(found, click.Command)
            self.add_command(found, cmd_name)
        return found
