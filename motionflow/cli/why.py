"""``motionflow why`` and ``impact``: why instances run, and what an edit would cost."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING

import click

from motionflow.cli.errors import die, handle_errors
from motionflow.cli.format import make_console, money, print_budget
from motionflow.cli.options import (
    cache_option,
    max_usd_option,
    plan_recipe,
    recipe_options,
    target_options,
    targets_from,
)

if TYPE_CHECKING:
    from rich.console import Console

    from motionflow.budget import BudgetCheck
    from motionflow.plan import Plan
    from motionflow.targets import Targets
    from motionflow.why import Change, Explanation, ExplanationGroup

__all__ = ["impact", "why"]


def _preview_plan(
    recipe: str,
    var: tuple[str, ...],
    allow_outside: bool,
    cache_dir: str | None,
    targets: Targets | None = None,
) -> Plan:
    """Plan through a cache that is only read: ``why`` and ``impact`` write nothing."""
    return plan_recipe(recipe, var, allow_outside, cache_dir, targets, preview=True)[1]


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


_NAMES_SHOWN = 5
"""A group of instances names this many of them, then ``(and N more)``."""

_CONTEXT_WORDS = 5
"""Unchanged words kept on each side of a prompt edit; longer stretches become ``…``."""

_Piece = tuple[str, str | None]
"""A word (no white space) and its rich style."""


def _words(text: str, style: str | None = None) -> list[_Piece]:
    return [(word, style) for word in text.split()]


def _say(console: Console, pieces: list[_Piece], indent: int = 0, hang: int = 2) -> None:
    """Print words filled to the console's width, breaking lines only between words.

    Continuation lines are indented ``hang`` more than the first. A word wider than the line
    is kept whole (the terminal may fold it) rather than cut.
    """
    from rich.cells import cell_len
    from rich.text import Text

    width = max(console.width, 40)
    line, used, first = Text(" " * indent), indent, True
    previous: str | None = None
    for word, style in pieces:
        if not first and used + 1 + cell_len(word) > width:
            console.print(line, soft_wrap=True)
            line, used, first = Text(" " * (indent + hang)), indent + hang, True
        if not first:  # a space inside a deletion is struck through with it
            line.append(" ", style=style if style == previous else None)
            used += 1
        line.append(word, style=style)
        used += cell_len(word)
        first, previous = False, style
    console.print(line, soft_wrap=True)


def _diff_pieces(change: Change, console: Console) -> list[_Piece]:
    """A prompt's word diff: coloured on a terminal, ``[-old-]{+new+}`` markers otherwise."""
    from motionflow.worddiff import ELLIPSIS, edits, render, word_diff

    segments = word_diff(str(change.old), str(change.new), context=_CONTEXT_WORDS)
    if not edits(str(change.old), str(change.new)):
        return _words("(the same words: only white space or line breaks changed)", "dim")
    if not console.is_terminal or console.no_color:
        return _words(render(segments))
    styles = {"del": "red strike", "ins": "bold green", "same": None}
    pieces: list[_Piece] = []
    for segment in segments:
        if segment.kind == "gap":
            pieces.append((ELLIPSIS, "dim"))
        else:
            pieces.extend((word, styles[segment.kind]) for word in segment.words)
    return pieces


def _say_changes(
    changes: list[Change], fields: list[list[str]], console: Console, example: str = ""
) -> None:
    """Each change once; a prompt's word diff shows the words around it in ``example``."""
    for change, names in zip(changes, fields, strict=True):
        if change.component == "prompt":
            where = f", e.g. in {example}" if example else ""
            _say(console, _words(f"rendered prompt changed ({', '.join(names)}){where}:"), 2)
            _say(console, _diff_pieces(change, console), 4)
        else:
            _say(console, _words(change.describe()), 2)


def _origin(item: Explanation) -> str:
    if item.imported is None:
        return ""
    when = f" at {item.imported['at']}" if item.imported.get("at") else ""
    return f"imported from {item.imported['from']}{when} (cache import)"


def _say_tools(item: Explanation, console: Console) -> None:
    """The tool versions a cached result was made with, and whether this machine's differ."""
    from motionflow.why import tools_note

    note = tools_note(item)
    if note is not None:
        _say(console, _words(note, "yellow" if item.tool_changes else "dim"), 2)


def _headline(group: ExplanationGroup) -> str:
    if group.kind == "changed" and group.status == "cached":
        return "changed since the last run, but an earlier run made this key: reused, free"
    return group.headline


def _status(group: ExplanationGroup, colon: bool = False) -> list[_Piece]:
    """``unchanged (cached)``, ``cached`` or ``run ($8.40)``, and a colon before a reason."""
    if group.kind == "unchanged":
        return _words("unchanged (cached)", "green")
    end = ":" if colon else ""
    if group.status == "cached":
        return [(f"cached{end}", "green")]
    cost = f" ({money(group.estimated_usd)})" if group.estimated_usd else ""
    return _words(f"run{cost}{end}", "yellow")


def _print_one(group: ExplanationGroup, console: Console) -> None:
    """One instance, in full: its key, the last run's, and each change or its components."""
    item = group.members[0]
    origin = _origin(item)
    if group.kind == "unchanged":
        comma = "," if origin else ""  # "x: unchanged (cached), imported from ..."
        _say(console, [(f"{item.label}:", "bold"), *_words(f"unchanged (cached){comma}", "green")])
        if origin:
            _say(console, _words(origin), 2)
        _say_tools(item, console)
        return
    reason = item.reason if group.kind == "waiting" else _headline(group)
    _say(console, [(f"{item.label}:", "bold"), *_status(group, colon=True), *_words(reason)])
    if item.key is not None:
        was = f" (last run: {item.previous_key[:12]}…)" if item.previous_key else ""
        _say(console, _words(f"key {item.key[:12]}…{was}"), 2)
    if origin:
        _say(console, _words(origin), 2)
    _say_tools(item, console)
    if item.components is None:
        _say(console, _words("key not known until the stages it waits for have run"), 2)
    elif item.new:
        _say(console, _words(_components_line(item.components)), 2)
    elif not item.changes:
        _say(console, _words("same key components as the last run"), 2)
    _say_changes(item.changes, group.fields, console)


def _print_group(group: ExplanationGroup, console: Console) -> None:
    """Instances that share a reason: the reason once, how many, and a few of their names."""
    if len(group.members) == 1:
        _print_one(group, console)
        return
    count = len(group.members)
    shown = ", ".join(group.instances[:_NAMES_SHOWN])
    more = f" (and {count - _NAMES_SHOWN} more)" if count > _NAMES_SHOWN else ""
    if group.kind == "unchanged":
        _say(console, _status(group))
    else:
        _say(console, [*_status(group, colon=True), *_words(_headline(group))])
    stages = Counter(m.stage for m in group.members)
    mixed = 1 < len(stages) < count  # "40 instances (20 prompt, 20 take)"
    of = f" ({', '.join(f'{n} {stage}' for stage, n in stages.items())})" if mixed else ""
    _say(console, _words(f"{count} instances{of}: {shown}{more}"), 2)
    origin = _origin(group.members[0])
    if origin:
        _say(console, _words(origin), 2)
    _say_tools(group.members[0], console)  # the same for every member (see _group_of)
    if group.kind == "waiting":
        _say(console, _words("keys not known until the stages they wait for have run"), 2)
    elif group.kind == "new":
        _say(console, _words("new since the last run, so nothing to compare with"), 2)
    _say_changes(group.changes, group.fields, console, example=group.instances[0])


def _print_summary(groups: list[ExplanationGroup], console: Console) -> None:
    """The totals, and where to find what the groups leave out."""
    members = [m for g in groups for m in g.members]
    to_run = [m for m in members if m.status == "run"]
    usd = round(sum(m.estimated_usd for m in to_run), 2)
    cost = f" ({money(usd)})" if usd else ""
    text = f"{len(members)} instances: {len(members) - len(to_run)} cached, {len(to_run)} to run"
    text += f"{cost}; `--variant ID` or `--json` shows each in full."
    _say(console, _words(text, "dim"))


@click.command()
@recipe_options
@click.argument("stage", required=False)
@target_options
@cache_option
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
    only: tuple[str, ...] = (),
    target_stages: tuple[str, ...] = (),
) -> None:
    """Show each instance's key components and what changed since the last run."""
    from motionflow.why import explain, group_explanations

    targets = targets_from(only, target_stages)
    planned = _preview_plan(recipe, var, allow_outside_project, cache_dir, targets)
    with handle_errors():
        items = explain(planned, stage, variant)
        groups = group_explanations(items)
    if as_json:
        body = {
            "recipe": planned.recipe.name,
            "instances": [i.to_json() for i in items],
            "groups": [g.to_json() for g in groups],
        }
        click.echo(json.dumps(body))
        return
    console = make_console()
    for group in groups:
        _print_group(group, console)
    if any(len(g.members) > 1 for g in groups):
        _print_summary(groups, console)
    if not items:
        console.print("No instances match.")


@click.command()
@recipe_options
@target_options
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print the impact as JSON.")
@max_usd_option("Judge the cost against this budget (exit 3 over it) instead of budget.max_usd.")
def impact(
    recipe: str,
    var: tuple[str, ...],
    allow_outside_project: bool,
    cache_dir: str | None,
    as_json: bool,
    max_usd: float | None,
    only: tuple[str, ...] = (),
    target_stages: tuple[str, ...] = (),
) -> None:
    """What an edit would re-run and cost against the budget, before anything runs."""
    from motionflow.budget import check_budget
    from motionflow.errors import BudgetError

    targets = targets_from(only, target_stages)
    planned = _preview_plan(recipe, var, allow_outside_project, cache_dir, targets)
    budget = check_budget(planned, max_usd)
    _print_impact(planned, budget, as_json)
    if budget.over:  # as `run` would
        die(BudgetError(f"{budget.refusal()}. Nothing was run"))


def _print_impact(planned: Plan, budget: BudgetCheck, as_json: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from motionflow.impact import impact as compute_impact
    from motionflow.providers.pricing import price_table

    with handle_errors():
        result = compute_impact(planned)
        as_of = price_table().as_of
    if as_json:
        body = {**result.to_json(), "prices_as_of": as_of, "budget": budget.to_json()}
        click.echo(json.dumps(body))
        return
    console = make_console()
    if not result.groups:
        console.print(
            f"No impact: all {result.cached} stage instances of {escape(result.recipe)} are "
            "cached; a run would submit nothing and spend $0.00."
        )
        print_budget(budget, result.provider, console)
        return
    table = Table(title=f"impact: {result.recipe} ({result.provider})")
    for col in ("cause", "re-runs", "generations", "cost"):
        table.add_column(col, justify="left" if col == "cause" else "right")
    for group in result.groups:
        table.add_row(
            escape(group.cause),
            str(len(group.instances)),
            str(group.generations),
            money(group.usd, group.exact),
        )
    console.print(table)
    for group in result.groups:
        noun = "generation" if group.generations == 1 else "generations"
        others = len(group.instances) - group.generations
        extra = f" (+{others} free instance{'s' if others != 1 else ''})" if others else ""
        console.print(
            f"{escape(group.cause)} re-runs {group.generations} {noun}{extra}: "
            f"{money(group.usd, group.exact)}"
        )
    note = " (simulate: nothing is charged)" if result.provider == "simulate" else ""
    console.print(
        f"Total: {result.count} to re-run ({result.generations} generations), "
        f"[bold]{money(result.usd, result.exact)}[/] at prices as of {as_of}{note}; "
        f"{result.cached} cached. Nothing was run or written."
    )
    print_budget(budget, result.provider, console)
