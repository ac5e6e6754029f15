"""The ``motionflow`` command: parses flags, calls the library, renders its events with rich."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from motionflow.errors import MotionflowError, RecipeError, UsageError
from motionflow.version import __version__

if TYPE_CHECKING:
    from rich.console import Console

    from motionflow.budget import BudgetCheck
    from motionflow.executor import RunResult
    from motionflow.plan import Plan
    from motionflow.recipe.loader import Recipe
    from motionflow.targets import Targets

__all__ = ["main"]

_TABLE_LIMIT = 60


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _die(exc: MotionflowError) -> NoReturn:
    err = _console(stderr=True)
    if isinstance(exc, RecipeError):
        for diag in exc.diagnostics:
            style = "red" if diag.severity == "error" else "yellow"
            err.print(diag.render(), style=style if diag.line == 0 else None, markup=False)
        count = sum(1 for d in exc.diagnostics if d.severity == "error")
        err.print(f"[red]{count} error{'s' if count != 1 else ''}; nothing was run or spent.[/]")
    else:
        from rich.markup import escape

        err.print(f"[red]error:[/] {escape(str(exc))}")
    sys.exit(exc.exit_code)


@contextmanager
def _errors(*, detach: bool = False) -> Iterator[None]:
    try:
        yield
    except MotionflowError as exc:
        _die(exc)
    except KeyboardInterrupt:
        message = (
            "[yellow]interrupted[/]: nothing partial was kept; run the same command to continue"
        )
        if detach:
            message = (
                "[yellow]detached[/]: nothing partial was kept, and jobs already submitted stay "
                "in the journal (motionflow jobs lists them). Run the same command to resume "
                "them: they are polled and downloaded, never paid for again"
            )
        _console(stderr=True).print(message)
        sys.exit(130)


_EX_SOFTWARE = 70
"""Exit code of an internal error (a bug in motionflow), as in BSD's sysexits.h."""


def _internal_error(exc: Exception) -> NoReturn:
    """Report an unexpected exception as a bug in one line (redacted), and exit 70.

    The traceback is printed (redacted too) only with ``MOTIONFLOW_DEBUG=1``.
    """
    import os

    from motionflow.providers.redact import Redactor

    redact = Redactor(os.environ.get("EMPIRIOLABS_API_KEY", ""))
    if os.environ.get("MOTIONFLOW_DEBUG") == "1":
        import traceback

        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    detail = " ".join(str(exc).split()) or "(no message)"
    line = (
        f"internal error: {type(exc).__name__}: {detail}; this is a bug in motionflow: "
        f"please report it with the command you ran (motionflow --version: {__version__})"
    )
    sys.stderr.write(redact(line) + "\n")
    sys.stderr.flush()
    sys.exit(_EX_SOFTWARE)


def _last_resort(call: Callable[[], Any]) -> Any:
    """``call()``; an exception that nothing else handled is an internal error (exit 70).

    Interrupts and exits pass through (``KeyboardInterrupt`` and ``SystemExit`` are not
    ``Exception``), and so do click's own exceptions; a motionflow error is reported as usual.
    """
    try:
        return call()
    except (click.ClickException, click.exceptions.Abort, click.exceptions.Exit):
        raise
    except MotionflowError as exc:
        _die(exc)
    except Exception as exc:  # noqa: BLE001 - the last resort: anything else is a bug
        _internal_error(exc)


def _parse_vars(values: tuple[str, ...]) -> dict[str, Any]:
    from motionflow.recipe.loader import parse_var

    parsed: dict[str, Any] = {}
    for text in values:
        try:
            name, value = parse_var(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--var") from exc
        parsed[name] = value
    return parsed


def _load(recipe: str, var: tuple[str, ...], allow_outside: bool) -> Recipe:
    from motionflow.recipe.loader import load_recipe

    return load_recipe(
        recipe,
        overrides=_parse_vars(var),
        allow_outside_project=allow_outside,
        keep_going=True,
    )


def _cache(cache_dir: str | None) -> Any:
    from motionflow.cache.store import Cache, default_cache_dir

    return Cache(Path(cache_dir) if cache_dir else default_cache_dir())


def _plan(
    recipe: str,
    var: tuple[str, ...],
    allow_outside: bool,
    cache_dir: str | None,
    targets: Targets | None = None,
) -> tuple[Recipe, Plan]:
    from motionflow.targets import targeted_plan

    with _errors():
        loaded = _load(recipe, var, allow_outside)
        cache = _cache(cache_dir)
        try:
            return loaded, targeted_plan(loaded, cache, targets)
        finally:
            cache.close()
    raise AssertionError  # pragma: no cover - _errors() exits


def _cache_root(cache_dir: str | None) -> Path:
    from motionflow.cache.store import default_cache_dir

    return Path(cache_dir) if cache_dir else default_cache_dir()


def _recipe_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--allow-outside-project",
        is_flag=True,
        help="Allow recipe input paths outside the project folder.",
    )(func)
    func = click.option(
        "--var", "var", multiple=True, metavar="NAME=VALUE", help="Override a recipe var."
    )(func)
    return click.argument("recipe", type=click.Path(dir_okay=False))(func)


def _target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--only AXIS=VALUE`` and ``--stage NAME`` (both repeatable): see motionflow.targets."""
    func = click.option(
        "--stage",
        "target_stages",
        multiple=True,
        metavar="NAME",
        help="Only this stage's instances and what they need (repeatable).",
    )(func)
    return click.option(
        "--only",
        "only",
        multiple=True,
        metavar="AXIS=VALUE",
        help="Only the variants with this matrix value (repeatable; an axis twice: either).",
    )(func)


def _targets(only: tuple[str, ...], target_stages: tuple[str, ...]) -> Targets:
    from motionflow.targets import Targets

    return Targets(tuple(only), tuple(target_stages))


def _cache_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--cache",
        "cache_dir",
        envvar="MOTIONFLOW_CACHE",
        metavar="DIR",
        help="Cache directory [env MOTIONFLOW_CACHE; default: the user cache dir].",
    )(func)


def _dollars(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``--max-usd``: a finite number of dollars >= 0 (a NaN budget would let any plan through)."""
    del ctx, param
    if value is None:
        return None
    from motionflow.money import usd_problem

    try:
        number: object = float(value)
    except ValueError:
        number = value
    problem = usd_problem(number)
    if problem is not None or not isinstance(number, float):
        msg = (
            f"{problem}; pass a finite number of dollars >= 0, e.g. --max-usd 12.50, or "
            "leave it out to use the recipe's budget.max_usd"
        )
        raise click.BadParameter(msg)
    return number


def _max_usd_option(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--max-usd USD``, a budget (checked: finite and >= 0) that replaces budget.max_usd."""
    return click.option("--max-usd", metavar="USD", callback=_dollars, help=text)


def _print_budget(check: BudgetCheck, provider: str, console: Console) -> None:
    """One line: the budget, where it comes from, and how the plan's cost fits in it."""
    cost = _money(check.estimated_usd, check.exact)
    if check.max_usd is None:
        ask = " run asks before spending real money." if provider == "empiriolabs" else ""
        console.print(
            f"Budget: none (pass --max-usd or set budget: {{max_usd: ...}} in the recipe).{ask}"
        )
    elif check.over:
        console.print(
            f"Budget: {_money(check.max_usd)} ({check.source}); the plan costs {cost}: "
            "[red]over the budget[/]."
        )
    elif check.may_exceed:
        console.print(
            f"[yellow]Budget[/]: {_money(check.max_usd)} ({check.source}); the plan costs "
            f"{cost}, which may pass it: run reserves each generation's price before "
            "submitting it and skips those past the budget (exit 3)."
        )
    else:
        console.print(
            f"Budget: {_money(check.max_usd)} ({check.source}); the plan costs {cost}, "
            f"within it ({_money(check.max_usd - check.estimated_usd)} left)."
        )


class _Commands(click.Group):
    """The command group; commands defined in other modules are imported when first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_ELSEWHERE})

    def main(self, *args: Any, **kwargs: Any) -> Any:
        return _last_resort(lambda: super(_Commands, self).main(*args, **kwargs))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in _ELSEWHERE:
            import importlib

            module, _, name = _ELSEWHERE[cmd_name].partition(":")
            found = getattr(importlib.import_module(module), name)
            assert isinstance(found, click.Command)
            self.add_command(found, cmd_name)
        return found


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="motionflow")
def main() -> None:
    """Turn YAML recipes into Kling v3 Motion Control videos, paying for each generation once."""
    # Planning a large sweep allocates hundreds of thousands of small, long-lived objects;
    # collecting the youngest generation every 700 allocations costs ~30% of a 10,000-variant
    # plan. This process is short-lived, so collect far less often (the library leaves the
    # interpreter's settings alone).
    gc.set_threshold(100_000, 50, 100)


@main.command()
@_recipe_options
@_cache_option
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
    loaded, planned = _plan(recipe, var, allow_outside_project, cache_dir)
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

    with _errors():  # Ctrl-C as usual; a motionflow error is caught just below
        try:
            loaded = _load(recipe, var, allow_outside)
            cache = _cache(cache_dir)
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


def _money(value: float, exact: bool = True) -> str:
    return ("" if exact else "≤") + f"${value:,.2f}"


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "recipe": plan.recipe.name,
        "provider": plan.recipe.model.provider,
        "to_run": len(plan.to_run),
        "cached": len(plan.cached),
        "estimated_usd": plan.estimated_usd,
        "estimate_exact": plan.exact,
        "saved_usd": plan.saved_usd,
        "instances": [
            {
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
            for p in plan.items
        ],
    }


def _print_plan(plan: Plan, console: Console, show_all: bool) -> None:
    from rich.markup import escape

    from motionflow.cli_tables import Column, print_table
    from motionflow.plan import brief_reason, describe_origin, stage_reason

    simulated = plan.recipe.model.provider == "simulate"
    title = f"plan: {plan.recipe.name} ({plan.recipe.model.provider})"
    rows: list[tuple[str, ...]] = []
    if show_all or len(plan.items) <= _TABLE_LIMIT:
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
                _money(p.estimate.usd, p.estimate.exact)
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
                    _money(usd, exact) if usd else "",
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
    total = _money(plan.estimated_usd, plan.exact)
    note = (
        " (simulate: nothing is charged; this is what empiriolabs would cost)" if simulated else ""
    )
    console.print(
        f"{len(plan.to_run)} to run, {len(plan.cached)} cached. "
        f"Estimated cost of the misses: [bold]{total}[/]{note}. "
        f"The cache saves {_money(plan.saved_usd)}.",
        soft_wrap=False,  # prose: wrapped at words, amounts stay whole
    )


@main.command()
@_recipe_options
@_target_options
@_cache_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--all", "show_all", is_flag=True, help="List every instance, however many.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the plan, stamped with its digests, to a file for `run --plan` (- for stdout).",
)
@_max_usd_option("Judge the plan against this budget (exit 3 over it) instead of budget.max_usd.")
def plan(
    recipe: str,
    var: tuple[str, ...],
    allow_outside_project: bool,
    only: tuple[str, ...],
    target_stages: tuple[str, ...],
    cache_dir: str | None,
    as_json: bool,
    show_all: bool,
    output: str | None,
    max_usd: float | None,
) -> None:
    """Show what a run would do: each instance's status, reason and cost, and the budget."""
    from motionflow.budget import check_budget
    from motionflow.errors import BudgetError
    from motionflow.ledger import pending_jobs, pending_note

    targets = _targets(only, target_stages)
    _, planned = _plan(recipe, var, allow_outside_project, cache_dir, targets)
    budget = check_budget(planned, max_usd)
    with _errors():
        pending = pending_jobs(_cache_root(cache_dir))
    if as_json:
        document = {**_plan_json(planned), "budget": budget.to_json(), "pending_jobs": pending}
        if targets:
            document["targets"] = targets.to_json()
        click.echo(json.dumps(document))
    else:
        console = _console(stderr=output == "-")  # stdout carries the plan file
        _print_plan(planned, console, show_all)
        _print_budget(budget, planned.recipe.model.provider, console)
        _print_targets(planned, targets, console)
        if note := pending_note(pending):
            console.print(f"[yellow]pending:[/] {note}", highlight=False)
    if budget.over:  # as `run` would: exit 3, and no plan file to approve
        unwritten = f"; {output} was not written" if output else ""
        _die(BudgetError(f"{budget.refusal()}. Nothing was run{unwritten}"))
    if output == "-":  # the plan file on standard output, for a pipe or a review tool
        from motionflow.planfile import plan_document

        if as_json:
            _die(UsageError("--json and -o - both write to standard output; choose one"))
        document = plan_document(planned, var, budget)
        click.echo(json.dumps(document, indent=1, sort_keys=True))
        return
    if output:
        from motionflow.planfile import plan_document, write_plan

        with _errors():
            write_plan(Path(output), plan_document(planned, var, budget))
        command = _run_command(recipe, var, allow_outside_project, cache_dir, max_usd, output)
        click.echo(
            f"wrote {output}: {len(planned.to_run)} to run, "
            f"{_money(planned.estimated_usd, planned.exact)}. After review: {command}",
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
    argv += _targets(params.get("only", ()), params.get("target_stages", ())).argv()
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


def _nothing_to_do(cached: int, saved_usd: float) -> str:
    return (
        f"Nothing to do: all {cached} stage instances reused from the cache; "
        f"0 jobs submitted, $0.00 spent (saved {_money(saved_usd)})."
    )


def _print_result(result: RunResult, plan: Plan, console: Console) -> None:
    from rich.markup import escape

    from motionflow.cli_tables import Column, print_table

    simulated = plan.recipe.model.provider == "simulate"
    if result.executed == 0 and result.failed == 0 and result.blocked == 0:
        click.echo(_nothing_to_do(result.cached, result.saved_usd))
        _print_jobs_elsewhere(result, console)
        return
    rows = [("reused", str(result.cached)), ("ran", str(result.executed))]
    if result.failed:
        rows.append(("[red]failed[/]", str(result.failed)))
    if result.blocked:
        rows.append(("[yellow]skipped[/]", str(result.blocked)))
    rows.append(("jobs submitted", str(result.jobs_submitted)))
    if result.jobs_resumed:
        rows.append(("jobs resumed (already paid)", str(result.jobs_resumed)))
    if result.jobs_in_doubt:
        rows.append(("[red]submits in doubt (maybe charged)[/]", str(result.jobs_in_doubt)))
    spend = _money(result.estimated_usd) + (" (simulated, $0.00 charged)" if simulated else "")
    rows.append(("estimated spend", spend))
    if not simulated:
        rows.append(("charged", _money(result.spent_usd)))
    rows.append(("saved by the cache", _money(result.saved_usd)))
    columns = (Column("what"), Column("value", "money"))
    print_table(console, columns, rows, title=f"run: {plan.recipe.name}", show_header=False)
    for label, message in result.failures:
        console.print(f"[red]failed[/] {escape(label)}: {escape(message)}")
    if result.outputs:
        console.print(f"outputs in {plan.recipe.out_dir}")
    _print_jobs_elsewhere(result, console)


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def _print_jobs_elsewhere(result: RunResult, console: Console) -> None:
    """Paid jobs of other recipes, vars or interrupted runs: what this run did about them."""
    from rich.markup import escape

    if result.jobs_collected:
        console.print(
            f"Collected {result.jobs_collected} paid job(s) left by earlier runs into the cache."
        )
    for message in result.jobs_pending:
        console.print(f"[yellow]pending[/] {escape(message)}")
    if result.jobs_pending or result.jobs_in_doubt:
        console.print(
            "Paid jobs are waiting: `motionflow jobs` lists them, `motionflow jobs collect` "
            "fetches those in flight."
        )


def _spending_limit(
    planned: Plan, limit: float | None, *, yes: bool, interactive: bool
) -> float | None:
    """The budget a run holds to; asks on a terminal when real money has no stated limit.

    Raises:
        BudgetError: real money would be spent with no limit, no ``--yes`` and no terminal,
            or the user declined.
    """
    from motionflow.errors import BudgetError

    to_pay = [p for p in planned.to_run if p.estimate.usd > 0]
    if planned.recipe.model.provider == "simulate" or not to_pay or limit is not None or yes:
        return limit
    total = _money(planned.estimated_usd, planned.exact)
    what = f"{len(to_pay)} paid generation{'s' if len(to_pay) != 1 else ''} ({total})"
    if interactive and sys.stdin.isatty() and sys.stderr.isatty():
        _print_plan(planned, _console(stderr=True), show_all=False)
        if click.confirm(f"Submit {what} to EmpirioLabs?", default=False, err=True):
            return planned.estimated_usd  # the price the user saw is the budget
        msg = "declined: nothing was submitted"
        raise BudgetError(msg)
    msg = (
        f"this run would submit {what} and states no spending limit; pass --max-usd "
        f"{planned.estimated_usd:.2f}, set budget: {{max_usd: ...}} in the recipe, or pass --yes. "
        "Nothing was submitted"
    )
    raise BudgetError(msg)


@main.command()
@_recipe_options
@_target_options
@_cache_option
@click.option("--jobs", "-j", type=click.IntRange(1, 256), help="Instances run at once [CPUs].")
@_max_usd_option("Refuse to spend more (exit 3); replaces budget.max_usd.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Only the summary.")
@click.option(
    "--recheck",
    is_flag=True,
    help="Plan in full even when the run stamp says nothing changed.",
)
@click.option("--yes", "-y", is_flag=True, help="Spend without asking (no budget needed).")
@click.option(
    "--resubmit-in-doubt",
    is_flag=True,
    help="Pay again for jobs whose submit may or may not have been charged.",
)
@click.option(
    "--resubmit-lost",
    is_flag=True,
    help="Pay again for jobs whose result expired before it was downloaded.",
)
@click.option("--retry-failed", is_flag=True, help="Submit again jobs the service failed.")
@click.option("--no-report", is_flag=True, help="Do not write out/<recipe>/index.html.")
@click.option(
    "--publish",
    "publish_kind",
    type=click.Choice(["url", "static", "s3", "empiriolabs-upload", "loopback"]),
    help="How local media become URLs (overrides the recipe's publish:).",
)
@click.option(
    "--publish-option",
    multiple=True,
    metavar="KEY=VALUE",
    help="A publisher setting, e.g. base_url=https://cdn.example/mf (repeatable).",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False),
    help="Run exactly this reviewed plan (from `plan -o`); refuse (exit 2) if anything drifted.",
)
def run(
    recipe: str,
    var: tuple[str, ...],
    allow_outside_project: bool,
    only: tuple[str, ...],
    target_stages: tuple[str, ...],
    cache_dir: str | None,
    jobs: int | None,
    max_usd: float | None,
    as_json: bool,
    quiet: bool,
    recheck: bool,
    yes: bool,
    resubmit_in_doubt: bool,
    resubmit_lost: bool,
    retry_failed: bool,
    no_report: bool,
    publish_kind: str | None,
    publish_option: tuple[str, ...],
    plan_file: str | None,
) -> None:
    """Run a recipe: reuse cached results, run and pay for the misses only.

    Jobs interrupted by Ctrl-C or a crash are resumed (polled, downloaded), never paid again;
    the --resubmit-*/--retry-* flags are the only ways to pay twice for one generation.
    """
    from motionflow.cache.journal import Journal
    from motionflow.cache.store import default_cache_dir
    from motionflow.stamp import check_stamp, write_stamp

    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    targets = _targets(only, target_stages)
    with _errors():
        waiting = bool(Journal(cache_root).open_keys())  # paid jobs to collect, or to report
    if not recheck and plan_file is None and not waiting:  # a reviewed plan: checked in full
        summary = check_stamp(
            cache_root, Path(recipe), list(var), allow_outside_project, targets.to_json()
        )
        if summary is not None:
            if as_json:
                click.echo(json.dumps(summary))
            else:
                click.echo(_nothing_to_do(summary["cached"], summary["saved_usd"]))
            return

    import asyncio
    import time

    from motionflow.executor import execute
    from motionflow.progress import RunProgress
    from motionflow.providers.session import options_from_env
    from motionflow.publish.factory import publish_from_cli
    from motionflow.targets import targeted_plan

    console = _console(stderr=as_json)
    with _errors(detach=True):
        reviewed = approval = None
        if plan_file is not None:
            from motionflow.planfile import load_plan
            from motionflow.review import Approval, check_plan

            reviewed = load_plan(Path(plan_file))
        loaded = _load(recipe, var, allow_outside_project)
        publish = publish_from_cli(publish_kind, publish_option)
        options = options_from_env(
            resubmit_in_doubt=resubmit_in_doubt,
            resubmit_lost=resubmit_lost,
            retry_failed=retry_failed,
        )
        _check_settings()
        cache = _cache(cache_dir)
        try:
            planned = targeted_plan(loaded, cache, targets)
            if reviewed is not None:  # before anything runs: nothing is spent on a drift
                check_plan(reviewed, planned, Path(plan_file or ""), raw_vars=var)
                # generations whose key is known only during the run: checked before submitting
                approval = Approval(reviewed, planned)
            limit = max_usd if max_usd is not None else loaded.model.budget.max_usd
            if limit is None and reviewed is not None:  # the reviewed total (+ a cent) caps it
                limit = round(float(reviewed.get("estimated_usd") or 0.0) + 0.01, 2)
            # a reviewed plan is the consent to spend what it says (and it cannot cost more)
            limit = _spending_limit(
                planned, limit, yes=yes or reviewed is not None, interactive=not as_json
            )
            started = time.time()
            with RunProgress(console, len(planned.items), quiet=quiet, as_json=as_json) as progress:
                result = asyncio.run(
                    execute(
                        planned,
                        cache,
                        reporter=progress,
                        jobs=jobs,
                        max_usd=limit,
                        generation=options,
                        publish=publish,
                        approve=approval,
                    )
                )
            write_stamp(planned, result, cache, list(var), allow_outside_project, targets.to_json())
        finally:
            cache.close()
    # the gallery, refreshed when this run made something, shows other vars than the last
    # recorded run (all cached, yet other results in out/), or there is none yet
    fresh = result.executed or _gallery_stale(loaded)
    if not no_report and result.outputs and fresh:
        from motionflow.cli_report import report_after_run

        report_after_run(loaded, cache_dir, started)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        _print_result(result, planned, console)
    if approval is not None and approval.refused:
        _die(UsageError(_refused_during_run(approval.refused, plan_file or "")))
    sys.exit(result.exit_code)


def _gallery_stale(loaded: Recipe) -> bool:
    """No gallery yet, or the last run it recorded had other ``--var`` values than this one."""
    if not (loaded.out_dir / "index.html").is_file():
        return True
    from motionflow.report.history import load_runs, overrides

    runs, _ = load_runs(loaded.out_dir, limit=1)
    return not runs or runs[0].overrides != overrides(loaded)


def _check_settings() -> None:
    """A set but unusable ``MOTIONFLOW_FFMPEG``, ``MOTIONFLOW_FONT`` or ``MOTIONFLOW_PRICES``
    is refused before anything runs or is written (exit 2), not found out by the first stage
    that needs it."""
    import os

    from motionflow.media.ffmpeg import ENV_FFMPEG, find_ffmpeg
    from motionflow.media.fonts import ENV_FONT, find_font
    from motionflow.providers.pricing import price_table

    price_table()
    if os.environ.get(ENV_FFMPEG):
        find_ffmpeg()
    if os.environ.get(ENV_FONT):
        find_font()


def _refused_during_run(refused: list[tuple[str, str]], plan_file: str) -> str:
    lines = "\n  - ".join(f"{label}: {reason}" for label, reason in refused)
    return (
        f"the run drifted from the reviewed plan {plan_file!r} once earlier stages had run:\n"
        f"  - {lines}\nNothing was submitted for these generations (what they wait for ran "
        "and is cached). Review with `motionflow why RECIPE`, then write a new plan with "
        "`motionflow plan RECIPE -o FILE`"
    )


@main.command()
@_recipe_options
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

    with _errors():
        graph = build_graph(_load(recipe, var, allow_outside_project))
    click.echo(json.dumps(dag_json(graph)) if as_json else render_dag(graph, fmt))


@main.command()
@click.argument(
    "folder", type=click.Path(file_okay=False, path_type=Path), default=Path(), required=False
)
def init(folder: Path) -> None:
    """Create a project: a commented recipe, sample media, .gitignore and a README.

    FOLDER defaults to the current folder. It may be new or hold other files, but none of those
    init writes (recipe.yaml, README.md, .gitignore, motionflow.toml, assets/hero.png,
    assets/dance.mp4): init never overwrites anything.
    """
    import asyncio
    import shlex

    from motionflow.scaffold import init_project

    with _errors():
        written = asyncio.run(init_project(folder))
    for path in written:
        click.echo(f"created {path}")
    go = "" if folder == Path() else f"cd {shlex.quote(str(folder))} && "
    click.echo(f"\nNext: {go}motionflow run recipe.yaml   (offline and free: simulate)")


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    \b
    bash: add  eval "$(motionflow completion bash)"  to ~/.bashrc (bash 4.4 or newer)
    zsh:  add  eval "$(motionflow completion zsh)"  to ~/.zshrc
    fish: motionflow completion fish > ~/.config/fish/completions/motionflow.fish
    """
    from click.shell_completion import get_completion_class

    # the script calls `_MOTIONFLOW_COMPLETE=<shell>_complete motionflow`, which click's
    # main() answers: commands (lazily registered ones too), options, choices and paths
    completer = get_completion_class(shell)
    assert completer is not None  # the three shells click ships
    script = completer(main, {}, "motionflow", "_MOTIONFLOW_COMPLETE").source()
    click.echo(script.rstrip("\n"))


@main.command("fake-server")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="0 picks a free port.")
@click.option(
    "--api-key",
    default="sk-empiriolabs-test",
    show_default=True,
    help="The key clients must send; 'any' accepts every key.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(0.001),
    default=1.0,
    show_default=True,
    help="Factor on every delay (queue, processing, retention, rate window); 0.01 is 100x faster.",
)
@click.option("--rate-limit", type=click.IntRange(1), help="Requests per minute (default: none).")
@click.option("--no-render", is_flag=True, help="Tiny placeholder outputs instead of videos.")
def fake_server(
    port: int, api_key: str, time_scale: float, rate_limit: int | None, no_render: bool
) -> None:
    """Serve the EmpirioLabs API contract on 127.0.0.1, offline, until Ctrl-C."""
    import time

    from motionflow.fakeapi import FakeConfig, FakeEmpirioLabs

    config = FakeConfig(
        api_key=None if api_key == "any" else api_key,
        time_scale=time_scale,
        rate_limit_per_minute=rate_limit,
        render=not no_render,
        port=port,
    )
    with _errors(), FakeEmpirioLabs(config) as server:
        click.echo(f"fake EmpirioLabs API on {server.url} (Ctrl-C stops it)", err=True)
        click.echo(server.url)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)


@main.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to a file (- for stdout)."
)
def schema(output: str | None) -> None:
    """Print the JSON Schema of recipes, for editor autocompletion."""
    from motionflow.manifest import atomic_write_text
    from motionflow.outfile import output_kind
    from motionflow.recipe.jsonschema import recipe_json_schema

    text = json.dumps(recipe_json_schema(), indent=2) + "\n"
    if output and output != "-":
        with _errors():
            if output_kind(Path(output), "the schema") == "discard":
                return
        try:
            atomic_write_text(Path(output), text)
        except OSError as exc:
            msg = f"cannot write the schema to {output!r}: {exc}; choose a writable path"
            _die(UsageError(msg))
    else:
        click.echo(text, nl=False)


# Commands that live in their own modules. They use the helpers above, so they are loaded when
# click asks for them (by name, or to list them in --help), never while this module loads:
# importing any of those modules first works too.
_ELSEWHERE = {
    "cache": "motionflow.cli_cache:cache",
    "impact": "motionflow.cli_why:impact",
    "jobs": "motionflow.cli_jobs:jobs",
    "report": "motionflow.cli_report:report",
    "spend": "motionflow.cli_jobs:spend",
    "why": "motionflow.cli_why:why",
}
