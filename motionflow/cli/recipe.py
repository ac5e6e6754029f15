"""``motionflow validate`` and ``dag``: read a recipe, check it or draw its stages; run nothing."""

from __future__ import annotations

import json
import sys

import click

from motionflow.cli.errors import handle_errors
from motionflow.cli.options import cache_option, load, open_cache, plan_recipe, recipe_options
from motionflow.errors import MotionflowError, RecipeError

__all__ = ["dag", "validate"]


@click.command()
@recipe_options
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print the result and every problem as JSON.")
def validate(
    recipe: str,
    var: tuple[str, ...],
    allow_outside_project: bool,
    cache_dir: str | None,
    as_json: bool,
) -> None:
    """Check a recipe without running anything (exit 2 on problems)."""
    # Planning binds every parameter, so stage parameter errors (prompt too long, duration
    # over the cap) are found too; the cache is only read (and input digests memoised).
    if as_json:
        _validate_json(recipe, var, allow_outside_project, cache_dir)
        return
    loaded, planned = plan_recipe(recipe, var, allow_outside_project, cache_dir)
    click.echo(
        f"ok: {loaded.display} is valid: {len(loaded.variants)} variant(s), "
        f"{len(loaded.model.stages)} stage(s), {len(planned.items)} stage instance(s)"
    )


def _validate_json(
    recipe: str, var: tuple[str, ...], allow_outside: bool, cache_dir: str | None
) -> None:
    """``validate --json``: one line, ``ok`` and the problems (located), same exit codes."""
    from motionflow.errors import Diagnostic
    from motionflow.plan import make_plan

    with handle_errors():  # Ctrl-C as usual; a motionflow error is caught just below
        try:
            loaded = load(recipe, var, allow_outside)
            cache = open_cache(cache_dir)
            try:
                planned = make_plan(loaded, cache)
            finally:
                cache.close()
        except MotionflowError as exc:
            found = (
                exc.diagnostics if isinstance(exc, RecipeError) else [Diagnostic(str(exc), recipe)]
            )
            problems = [
                {
                    "file": d.file,
                    "line": d.line or None,
                    "column": (d.column or 1) if d.line else None,
                    "severity": d.severity,
                    "message": d.message,
                }
                for d in found
            ]
            click.echo(json.dumps({"ok": False, "recipe": recipe, "problems": problems}))
            sys.exit(exc.exit_code)
    result = {
        "ok": True,
        "recipe": recipe,
        "name": loaded.model.name,
        "variants": len(loaded.variants),
        "stages": len(loaded.model.stages),
        "instances": len(planned.items),
        "problems": [],
    }
    click.echo(json.dumps(result))


@click.command()
@recipe_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid", "dot"]),
    default="text",
    show_default=True,
    help="text (one stage a line, with what it reads), Mermaid (flowchart) or Graphviz dot.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the nodes and edges as JSON (one line)."
)
def dag(
    recipe: str, var: tuple[str, ...], allow_outside_project: bool, fmt: str, as_json: bool
) -> None:
    """Print the stage graph (text, Mermaid or Graphviz dot)."""
    from motionflow.dag import dag_json, render_dag
    from motionflow.graph import build_graph

    with handle_errors():
        graph = build_graph(load(recipe, var, allow_outside_project))
    click.echo(json.dumps(dag_json(graph)) if as_json else render_dag(graph, fmt))
