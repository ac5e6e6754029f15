"""``motionflow plan``: what a run would do, each instance's reason and cost, and the budget."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from motionflow.cli.errors import die, handle_errors
from motionflow.cli.format import make_console, money, print_budget
from motionflow.cli.options import (
    cache_option,
    cache_root,
    max_usd_option,
    plan_recipe,
    recipe_options,
    remote_options,
    target_options,
    targets_from,
)
from motionflow.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from motionflow.plan import Plan, PlannedInstance
    from motionflow.targets import Targets

__all__ = ["TABLE_LIMIT", "plan", "print_plan"]

TABLE_LIMIT = 60
"""Plans with more instances than this show one row per stage (unless ``--all``)."""


def _plan_head(plan: Plan) -> dict[str, Any]:
    return {
        "recipe": plan.recipe.name,
        "provider": plan.recipe.model.provider,
        "to_run": len(plan.to_run),
        "cached": len(plan.cached),
        "estimated_usd": plan.estimated_usd,
        "estimate_exact": plan.exact,
        "saved_usd": plan.saved_usd,
    }


def _instance_json(p: PlannedInstance) -> dict[str, Any]:
    return {
        "stage": p.instance.stage,
        "variants": [v.id for v in p.instance.variants],
        "take": p.instance.take_label,
        "status": p.status,
        "reason": p.reason,
        "key": p.key,
        "estimated_usd": p.estimate.usd if p.status == "run" else 0.0,
        "estimate_exact": p.estimate.exact,
        "made_by": p.made_by,  # a hit's origin: {"recipe", "at", "imported_from"}
        "waits_for": list(p.waits),
    }


def _plan_json_chunks(plan: Plan, tail: dict[str, Any]) -> Iterator[str]:
    """The text of ``json.dumps({**head, "instances": [...], **tail})``, a piece at a time.

    A 100,000-variant plan is 50 MB of JSON: written as it is made, neither the list of
    200,000 dicts nor the whole text is ever held in memory.
    """
    for name, value in _plan_head(plan).items():
        yield ("{" if name == "recipe" else ", ") + f"{json.dumps(name)}: {json.dumps(value)}"
    yield ', "instances": ['
    for i, item in enumerate(plan.items):
        yield (", " if i else "") + json.dumps(_instance_json(item))
    yield "]"
    for name, value in tail.items():
        yield f", {json.dumps(name)}: {json.dumps(value)}"
    yield "}\n"


def print_plan(plan: Plan, console: Console, show_all: bool) -> None:
    from rich.markup import escape

    from motionflow.cli.tables import Column, print_table
    from motionflow.plan import brief_reason, describe_origin, stage_reason

    simulated = plan.recipe.model.provider == "simulate"
    title = f"plan: {plan.recipe.name} ({plan.recipe.model.provider})"
    rows: list[tuple[str, ...]] = []
    if show_all or len(plan.items) <= TABLE_LIMIT:
        columns = (
            Column("stage", "id"),
            Column("variant", min_width=12),
            Column("status", "id"),
            Column("reason", min_width=16),
            Column("cost", "money"),
        )
        for p in plan.items:
            inst = p.instance
            variants = (
                "all variants"
                if inst.gathers
                else inst.variants[0].id
                if len(inst.variants) == 1
                else f"{len(inst.variants)} variants"
            )
            if inst.take_label:
                variants += f" take {inst.take_label}"
            status = "[green]cached[/]" if p.status == "cached" else "[yellow]run[/]"
            cost = (
                money(p.estimate.usd, p.estimate.exact)
                if p.status == "run" and p.estimate.usd
                else ""
            )
            reason = escape(brief_reason(p))
            rows.append((escape(inst.stage), escape(variants), status, reason, cost))
        caption = None
    else:
        columns = (
            Column("stage", "id"),
            Column("cached", "number"),
            Column("run", "number"),
            Column("reasons", min_width=16),
            Column("cost", "money"),
        )
        by_stage: dict[str, list[Any]] = {}
        for p in plan.items:
            by_stage.setdefault(p.instance.stage, []).append(p)
        for stage, items in by_stage.items():
            runs = [p for p in items if p.status == "run"]
            reasons: dict[str, int] = {}
            for p in items:
                if p.status == "run":
                    why = stage_reason(p)  # "waits for take", not one reason per variant
                elif (origin := p.made_by) and p.reason != "unchanged":
                    why = describe_origin({**origin, "at": None})  # one group per maker
                else:
                    why = p.reason
                reasons[why] = reasons.get(why, 0) + 1
            top = ", ".join(
                f"{r} ×{n}" if n > 1 else r
                for r, n in sorted(reasons.items(), key=lambda x: -x[1])[:3]
            )
            usd = sum(p.estimate.usd for p in runs)
            exact = all(p.estimate.exact for p in runs)
            rows.append(
                (
                    escape(stage),
                    str(len(items) - len(runs)),
                    str(len(runs)),
                    escape(top),
                    money(usd, exact) if usd else "",
                )
            )
        caption = "one row per stage; --all lists every instance"
    print_table(console, columns, rows, title=title, caption=caption)
    elsewhere = [p for p in plan.cached if p.reason != "unchanged"]
    if elsewhere:
        console.print(
            f"{len(elsewhere)} cached results were not made by this project's last run: the "
            "cache is shared by every project on this machine (see docs/cache.md).",
            soft_wrap=False,
        )
    total = money(plan.estimated_usd, plan.exact)
    note = (
        " (simulate: nothing is charged; this is what empiriolabs would cost)" if simulated else ""
    )
    console.print(
        f"{len(plan.to_run)} to run, {len(plan.cached)} cached. "
        f"Estimated cost of the misses: [bold]{total}[/]{note}. "
        f"The cache saves {money(plan.saved_usd)}.",
        soft_wrap=False,  # prose: wrapped at words, amounts stay whole
    )


@click.command()
@recipe_options
@target_options
@cache_option
@remote_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--all", "show_all", is_flag=True, help="List every instance, however many.")
@click.option(
    "--rebuild-on-tool-change",
    is_flag=True,
    help="Plan to re-run cached free results made with another ffmpeg than this machine's.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the plan, stamped with its digests, to a file for `run --plan` (- for stdout).",
)
@max_usd_option("Judge the plan against this budget (exit 3 over it) instead of budget.max_usd.")
def plan(
    recipe: str,
    var: tuple[str, ...],
    allow_outside_project: bool,
    only: tuple[str, ...],
    target_stages: tuple[str, ...],
    cache_dir: str | None,
    remote: str | None,
    no_remote: bool,
    as_json: bool,
    show_all: bool,
    rebuild_on_tool_change: bool,
    output: str | None,
    max_usd: float | None,
) -> None:
    """Show what a run would do: each instance's status, reason and cost, and the budget."""
    from motionflow.budget import check_budget
    from motionflow.errors import BudgetError
    from motionflow.ledger import pending_jobs, pending_note

    targets = targets_from(only, target_stages)
    _, planned = plan_recipe(
        recipe,
        var,
        allow_outside_project,
        cache_dir,
        targets,
        remote=(remote, no_remote),
        rebuild_on_tool_change=rebuild_on_tool_change,
    )
    budget = check_budget(planned, max_usd)
    with handle_errors():
        pending = pending_jobs(cache_root(cache_dir))
    if as_json:
        tail: dict[str, Any] = {"budget": budget.to_json(), "pending_jobs": pending}
        if targets:
            tail["targets"] = targets.to_json()
        for chunk in _plan_json_chunks(planned, tail):
            sys.stdout.write(chunk)
        sys.stdout.flush()
    else:
        console = make_console(stderr=output == "-")  # stdout carries the plan file
        print_plan(planned, console, show_all)
        print_budget(budget, planned.recipe.model.provider, console)
        _print_targets(planned, targets, console)
        if note := pending_note(pending):
            console.print(f"[yellow]pending:[/] {note}", highlight=False)
    if budget.over:  # as `run` would: exit 3, and no plan file to approve
        unwritten = f"; {output} was not written" if output else ""
        die(BudgetError(f"{budget.refusal()}. Nothing was run{unwritten}"))
    if output == "-":  # the plan file on standard output, for a pipe or a review tool
        from motionflow.planfile import plan_document

        if as_json:
            die(UsageError("--json and -o - both write to standard output; choose one"))
        document = plan_document(planned, var, budget)
        click.echo(json.dumps(document, indent=1, sort_keys=True))
        return
    if output:
        from motionflow.planfile import plan_document, write_plan

        with handle_errors():
            write_plan(Path(output), plan_document(planned, var, budget))
        command = _run_command(recipe, var, allow_outside_project, cache_dir, max_usd, output)
        click.echo(
            f"wrote {output}: {len(planned.to_run)} to run, "
            f"{money(planned.estimated_usd, planned.exact)}. After review: {command}",
            err=as_json,
        )


def _run_command(
    recipe: str,
    var: tuple[str, ...],
    allow_outside: bool,
    cache_dir: str | None,
    max_usd: float | None,
    plan_file: str,
) -> str:
    """The `run --plan` command for a plan made with these flags, quoted for a POSIX shell."""
    import shlex

    from click.core import ParameterSource

    argv = ["motionflow", "run", recipe]
    for text in var:
        argv += ["--var", text]
    if allow_outside:
        argv.append("--allow-outside-project")
    source = click.get_current_context().get_parameter_source("cache_dir")
    if cache_dir and source is ParameterSource.COMMANDLINE:  # from MOTIONFLOW_CACHE: still set
        argv += ["--cache", cache_dir]
    if max_usd is not None:
        argv += ["--max-usd", repr(max_usd)]
    params = click.get_current_context().params
    argv += targets_from(params.get("only", ()), params.get("target_stages", ())).argv()
    if params.get("rebuild_on_tool_change"):
        argv.append("--rebuild-on-tool-change")
    return shlex.join([*argv, "--plan", plan_file])


def _print_targets(planned: Plan, targets: Targets, console: Console) -> None:
    """One line under a targeted plan: what it covers, and that the rest is left alone."""
    from rich.markup import escape

    if not targets:
        return
    variants = {v.id for p in planned.items for v in p.instance.variants if v.id}
    total = len(planned.recipe.variants)
    gathered = sorted(
        name
        for name, spec in planned.recipe.model.stages.items()
        if spec.over and targets.only and not targets.stages
    )
    skipped = f"; left out (over all variants): {', '.join(gathered)}" if gathered else ""
    console.print(
        f"Targets {escape(' '.join(targets.argv()))}: {len(variants)} of {total} variant(s), "
        f"{len(planned.items)} stage instance(s){escape(skipped)}. Only these are priced and "
        "run; other variants' outputs are left as they are."
    )
