"""``motionflow why`` and ``motionflow impact`` (registered by ``cli.py``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from motionflow.cli import (
    _cache_option,
    _console,
    _die,
    _errors,
    _load,
    _max_usd_option,
    _money,
    _print_budget,
    _recipe_options,
)

if TYPE_CHECKING:
    from rich.console import Console

    from motionflow.budget import BudgetCheck
    from motionflow.plan import Plan
    from motionflow.why import Explanation

__all__ = ["impact", "why"]


def _preview_plan(
    recipe: str, var: tuple[str, ...], allow_outside: bool, cache_dir: str | None
) -> Plan:
    """Plan through a cache that is only read: ``why`` and ``impact`` write nothing."""
    from pathlib import Path

    from motionflow.cache.store import default_cache_dir
    from motionflow.plan import make_plan
    from motionflow.why import PreviewCache

    with _errors():
        loaded = _load(recipe, var, allow_outside)
        cache = PreviewCache(Path(cache_dir) if cache_dir else default_cache_dir())
        try:
            return make_plan(loaded, cache)
        finally:
            cache.close()
    raise AssertionError  # pragma: no cover - _errors() exits


def _components_line(components: dict[str, object]) -> str:
    from motionflow.why import short_digest

    params = components.get("params")
    shown = (
        ", ".join(f"{k}={short_digest(v)}" for k, v in sorted(params.items()))
        if isinstance(params, dict)
        else ""
    )
    env = components.get("env")
    env_text = (
        ", ".join(f"{k}={short_digest(v)}" for k, v in sorted(env.items()))
        if isinstance(env, dict)
        else ""
    )
    text = f"{components.get('kind')} v{components.get('kind_version')}"
    text += f", take {components.get('take')}"
    if env_text:
        text += f"; env: {env_text}"
    return f"{text}; params: {shown}"


def _print_explanation(item: Explanation, console: Console) -> None:
    from rich.markup import escape

    origin = ""
    if item.imported is not None:
        when = f" at {item.imported['at']}" if item.imported.get("at") else ""
        origin = f"imported from {item.imported['from']}{when} (cache import)"
    if item.unchanged:
        line = f"[bold]{escape(item.label)}[/]: [green]unchanged (cached)[/]"
        console.print(line + (f", {escape(origin)}" if origin else ""))
        return
    cost = f" ({_money(item.estimated_usd)})" if item.estimated_usd else ""
    status = "[green]cached[/]" if item.status == "cached" else "[yellow]run[/]"
    reason = item.reason
    if item.status == "cached" and item.changes:
        reason = "changed since the last run, but an earlier run made this key: reused, free"
    console.print(f"[bold]{escape(item.label)}[/]: {status}{cost}: {escape(reason)}")
    if item.key is not None:
        was = f" (last run: {item.previous_key[:12]}…)" if item.previous_key else ""
        console.print(f"  key {item.key[:12]}…{was}")
    if origin:
        console.print(f"  {escape(origin)}")
    if item.components is None:
        console.print("  key not known until the stages it waits for have run")
    elif item.new:
        console.print(f"  {escape(_components_line(item.components))}")
    elif not item.changes:
        console.print("  same key components as the last run")
    for change in item.changes:
        console.print(f"  {escape(change.describe())}")
        if change.diff:
            for line in change.diff.splitlines():
                style = "red" if line.startswith("-") else "green" if line[:1] == "+" else None
                console.print(f"    {escape(line)}", style=style, markup=False)


@click.command()
@_recipe_options
@click.argument("stage", required=False)
@_cache_option
@click.option("--variant", metavar="ID", help="Only the instances of this variant.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanations as JSON.")
def why(
    recipe: str,
    var: tuple[str, ...],
    allow_outside_project: bool,
    stage: str | None,
    cache_dir: str | None,
    variant: str | None,
    as_json: bool,
) -> None:
    """Show each instance's key components and what changed since the last run."""
    from motionflow.why import explain

    planned = _preview_plan(recipe, var, allow_outside_project, cache_dir)
    with _errors():
        items = explain(planned, stage, variant)
    if as_json:
        click.echo(
            json.dumps({"recipe": planned.recipe.name, "instances": [i.to_json() for i in items]})
        )
        return
    console = _console()
    for item in items:
        _print_explanation(item, console)
    if not items:
        console.print("No instances match.")


@click.command()
@_recipe_options
@_cache_option
@click.option("--json", "as_json", is_flag=True, help="Print the impact as JSON.")
@_max_usd_option("Judge the cost against this budget (exit 3 over it) instead of budget.max_usd.")
def impact(
    recipe: str,
    var: tuple[str, ...],
    allow_outside_project: bool,
    cache_dir: str | None,
    as_json: bool,
    max_usd: float | None,
) -> None:
    """What an edit would re-run and cost against the budget, before anything runs."""
    from motionflow.budget import check_budget
    from motionflow.errors import BudgetError

    planned = _preview_plan(recipe, var, allow_outside_project, cache_dir)
    budget = check_budget(planned, max_usd)
    _print_impact(planned, budget, as_json)
    if budget.over:  # as `run` would
        _die(BudgetError(f"{budget.refusal()}. Nothing was run"))


def _print_impact(planned: Plan, budget: BudgetCheck, as_json: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from motionflow.providers.pricing import price_table
    from motionflow.why import impact as compute_impact

    with _errors():
        result = compute_impact(planned)
        as_of = price_table().as_of
    if as_json:
        body = {**result.to_json(), "prices_as_of": as_of, "budget": budget.to_json()}
        click.echo(json.dumps(body))
        return
    console = _console()
    if not result.groups:
        console.print(
            f"No impact: all {result.cached} stage instances of {escape(result.recipe)} are "
            "cached; a run would submit nothing and spend $0.00."
        )
        _print_budget(budget, result.provider, console)
        return
    table = Table(title=f"impact: {result.recipe} ({result.provider})")
    for col in ("cause", "re-runs", "generations", "cost"):
        table.add_column(col, justify="left" if col == "cause" else "right")
    for group in result.groups:
        table.add_row(
            escape(group.cause),
            str(len(group.instances)),
            str(group.generations),
            _money(group.usd, group.exact),
        )
    console.print(table)
    for group in result.groups:
        noun = "generation" if group.generations == 1 else "generations"
        others = len(group.instances) - group.generations
        extra = f" (+{others} free instance{'s' if others != 1 else ''})" if others else ""
        console.print(
            f"{escape(group.cause)} re-runs {group.generations} {noun}{extra}: "
            f"{_money(group.usd, group.exact)}"
        )
    note = " (simulate: nothing is charged)" if result.provider == "simulate" else ""
    console.print(
        f"Total: {result.count} to re-run ({result.generations} generations), "
        f"[bold]{_money(result.usd, result.exact)}[/] at prices as of {as_of}{note}; "
        f"{result.cached} cached. Nothing was run or written."
    )
    _print_budget(budget, result.provider, console)
