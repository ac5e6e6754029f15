"""``motionflow report``: the gallery of a recipe's results, out/<recipe>/index.html."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from motionflow.cli.errors import handle_errors
from motionflow.cli.format import make_console
from motionflow.cli.options import (
    cache_option,
    cache_root,
    load,
    recipe_options,
    target_options,
    targets_from,
)

if TYPE_CHECKING:
    from motionflow.recipe.loader import Recipe
    from motionflow.report import Report

__all__ = ["report", "report_after_run"]


def _write(loaded: Recipe, cache_dir: str | None, run_started: float | None) -> Report:
    import asyncio

    from motionflow.report import write_report

    root = cache_root(cache_dir)
    return asyncio.run(write_report(loaded, root, run_started=run_started))


def report_after_run(loaded: Recipe, cache_dir: str | None, run_started: float) -> None:
    """Refresh the gallery after ``motionflow run``; a failure is a warning, never the exit code."""
    from rich.markup import escape

    err = make_console(stderr=True)
    try:
        written = _write(loaded, cache_dir, run_started)
    except Exception as exc:  # noqa: BLE001 - the run's results and exit code matter more
        err.print(
            f"[yellow]warning:[/] the HTML report was not written: {escape(str(exc))}. "
            f"The run's outputs are fine; try `motionflow report {escape(loaded.display)}`."
        )
        return
    for note in written.notes:
        err.print(f"[yellow]warning:[/] report: {escape(note)}")
    err.print(f"report: {escape(str(written.path))}")


@click.command()
@recipe_options
@target_options
@cache_option
def report(
    recipe: str,
    var: tuple[str, ...],
    allow_outside_project: bool,
    cache_dir: str | None,
    only: tuple[str, ...] = (),
    target_stages: tuple[str, ...] = (),
) -> None:
    """Write out/<recipe>/index.html: every variant and take, playable, filterable.

    With --only/--stage, the gallery shows only those variants and outputs.
    """
    from rich.markup import escape

    from motionflow.manifest import Manifest
    from motionflow.targets import select_recipe

    with handle_errors():
        loaded = load(recipe, var, allow_outside_project)
        if any(d.severity == "error" for d in loaded.problems):
            from motionflow.errors import RecipeError

            raise RecipeError(loaded.problems)
        # another recipe with the same name: its results are not this recipe's to show
        Manifest.load(loaded.out_dir).claim(loaded.path, loaded.display, loaded.root)
        loaded = select_recipe(loaded, targets_from(only, target_stages))
        written = _write(loaded, cache_dir, None)
    console = make_console()
    for note in written.notes:
        make_console(stderr=True).print(f"[yellow]warning:[/] {escape(note)}")
    made = written.cards - written.missing
    missing = f", {written.missing} not made yet" if written.missing else ""
    earlier = f", {written.earlier_runs} earlier run(s)" if written.earlier_runs else ""
    console.print(f"wrote {escape(str(written.path))}: {made} video(s){missing}{earlier}")
    console.print(f"open it in a browser: {escape(written.path.resolve().as_uri())}")
