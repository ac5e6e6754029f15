"""The ``motionflow`` command group: assembles the commands, each loaded when first needed."""

from __future__ import annotations

import gc
from typing import Any

import click

from motionflow.cli.errors import last_resort
from motionflow.cli.lazy import LazyGroup

__all__ = ["COMMANDS", "Commands", "main"]

# Each command lives in the module of its noun and is imported when click asks for it (by
# name, or to list them in --help), never while this module loads: `motionflow run` on a
# project with nothing to do imports the run command's module and none of the others.
COMMANDS = {
    "cache": "motionflow.cli.cache:cache",
    "completion": "motionflow.cli.project:completion",
    "dag": "motionflow.cli.recipe:dag",
    "fake-server": "motionflow.cli.fake:fake_server",
    "impact": "motionflow.cli.why:impact",
    "init": "motionflow.cli.project:init",
    "jobs": "motionflow.cli.jobs:jobs",
    "plan": "motionflow.cli.plan:plan",
    "report": "motionflow.cli.report:report",
    "run": "motionflow.cli.run:run",
    "schema": "motionflow.cli.project:schema",
    "spend": "motionflow.cli.jobs:spend",
    "validate": "motionflow.cli.recipe:validate",
    "why": "motionflow.cli.why:why",
}
"""Command name -> ``module:attribute`` of its click command."""


class Commands(LazyGroup):
    """The command group; the commands of :data:`COMMANDS` are imported when first needed."""

    lazy = COMMANDS

    def main(self, *args: Any, **kwargs: Any) -> Any:
        return last_resort(lambda: super(Commands, self).main(*args, **kwargs))


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="motionflow", prog_name="motionflow")
def main() -> None:
    """Turn YAML recipes into Kling v3 Motion Control videos, paying for each generation once."""
    # Planning a large sweep allocates hundreds of thousands of small, long-lived objects;
    # collecting the youngest generation every 700 allocations costs ~30% of a 10,000-variant
    # plan. This process is short-lived, so collect far less often (the library leaves the
    # interpreter's settings alone).
    gc.set_threshold(100_000, 50, 100)
