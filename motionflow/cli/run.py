"""``motionflow run``: run a recipe, paying for the misses only, and show what it did."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from motionflow.cli.errors import die, handle_errors
from motionflow.cli.format import make_console, money
from motionflow.cli.options import (
    cache_option,
    load,
    max_usd_option,
    open_cache,
    open_remote,
    planning_gc,
    publish_from_cli,
    recipe_options,
    remote_options,
    target_options,
    targets_from,
)
from motionflow.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from rich.console import Console

    from motionflow.engine import RunResult
    from motionflow.plan import Plan
    from motionflow.recipe.loader import Recipe

__all__ = ["run"]


def _nothing_to_do(cached: int, saved_usd: float) -> str:
    return (
        f"Nothing to do: all {cached} stage instances reused from the cache; "
        f"0 jobs submitted, $0.00 spent (saved {money(saved_usd)})."
    )


def _print_result(result: RunResult, plan: Plan, console: Console) -> None:
    from rich.markup import escape

    from motionflow.cli.tables import Column, print_table

    simulated = plan.recipe.model.provider == "simulate"
    if result.executed == 0 and result.failed == 0 and result.blocked == 0:
        click.echo(_nothing_to_do(result.cached, result.saved_usd))
        _print_jobs_elsewhere(result, console)
        _print_remote(result, console)
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
    spend = money(result.estimated_usd) + (" (simulated, $0.00 charged)" if simulated else "")
    rows.append(("estimated spend", spend))
    if not simulated:
        rows.append(("charged", money(result.spent_usd)))
    rows.append(("saved by the cache", money(result.saved_usd)))
    columns = (Column("what"), Column("value", "money"))
    print_table(console, columns, rows, title=f"run: {plan.recipe.name}", show_header=False)
    for label, message in result.failures:
        console.print(f"[red]failed[/] {escape(label)}: {escape(message)}")
    if result.outputs:
        console.print(f"outputs in {plan.recipe.out_dir}")
    _print_jobs_elsewhere(result, console)
    _print_remote(result, console)


def _print_remote(result: RunResult, console: Console) -> None:
    """One line on what the team's remote cache gave and took, and its warnings."""
    from rich.markup import escape

    from motionflow.cli.format import format_size

    remote = result.remote
    if remote is None:
        return
    if remote["pulled"] or remote["pushed"]:
        console.print(
            f"remote {escape(remote['url'])}: pulled {remote['pulled']} result(s) "
            f"({format_size(remote['pulled_bytes'])}), pushed {remote['pushed']} "
            f"({format_size(remote['pushed_bytes'])})"
        )
    for problem in remote["problems"]:
        console.print(f"[yellow]warning:[/] {escape(problem)}")


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
    total = money(planned.estimated_usd, planned.exact)
    what = f"{len(to_pay)} paid generation{'s' if len(to_pay) != 1 else ''} ({total})"
    if interactive and sys.stdin.isatty() and sys.stderr.isatty():
        from motionflow.cli.plan import print_plan

        print_plan(planned, make_console(stderr=True), show_all=False)
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


def _executor_spec(ctx: click.Context, param: click.Parameter, spec: str) -> str:
    """``--executor``: ``local``, ``dask`` or ``dask://HOST:PORT``, checked before anything runs."""
    del ctx, param
    spec = spec.strip()
    if spec in {"local", "dask"} or (spec.startswith("dask://") and len(spec) > len("dask://")):
        return spec
    msg = (
        f"--executor {spec!r} is not an executor; use local (the default), dask (a Dask "
        "cluster on this machine) or dask://HOST:PORT (a running Dask scheduler)"
    )
    raise click.BadParameter(msg)


@click.command()
@recipe_options
@target_options
@cache_option
@remote_options
@click.option("--jobs", "-j", type=click.IntRange(1, 256), help="Instances run at once [CPUs].")
@click.option(
    "--executor",
    envvar="MOTIONFLOW_EXECUTOR",
    default="local",
    show_default=True,
    callback=_executor_spec,
    metavar="local|dask|dask://HOST:PORT",
    help="Where free stages run: here, a local Dask cluster, or a Dask scheduler.",
)
@max_usd_option("Refuse to spend more (exit 3); replaces budget.max_usd.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Only the summary.")
@click.option(
    "--recheck",
    is_flag=True,
    help="Plan in full even when the run stamp says nothing changed.",
)
@click.option(
    "--rebuild-on-tool-change",
    is_flag=True,
    help="Re-run cached free results made with another ffmpeg than this machine's.",
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
    remote: str | None,
    no_remote: bool,
    jobs: int | None,
    executor: str,
    max_usd: float | None,
    as_json: bool,
    quiet: bool,
    recheck: bool,
    rebuild_on_tool_change: bool,
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
    targets = targets_from(only, target_stages)
    with handle_errors():
        waiting = bool(Journal(cache_root).open_keys())  # paid jobs to collect, or to report
    # a reviewed plan, or a rebuild on a tool change: checked in full
    if not recheck and not rebuild_on_tool_change and plan_file is None and not waiting:
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
    import functools
    import time

    from motionflow.providers.options import options_from_env
    from motionflow.targets import targeted_plan

    console = make_console(stderr=as_json)
    with handle_errors(detach=True):
        reviewed = approval = None
        if plan_file is not None:
            from motionflow.planfile import load_plan
            from motionflow.review import Approval, check_plan

            reviewed = load_plan(Path(plan_file))
        with planning_gc():
            loaded = load(recipe, var, allow_outside_project)
        publish = publish_from_cli(publish_kind, publish_option)
        options = options_from_env(
            resubmit_in_doubt=resubmit_in_doubt,
            resubmit_lost=resubmit_lost,
            retry_failed=retry_failed,
        )
        _check_settings()
        cache = open_cache(cache_dir)
        team: Any = None
        result: RunResult | None = None
        try:
            team = open_remote(cache, loaded.root, remote, no_remote)
            with planning_gc():
                planned = targeted_plan(
                    loaded, cache, targets, rebuild_on_tool_change=rebuild_on_tool_change
                )
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
            # the engine (httpx, PyAV, the simulator) loads only once there is something to run
            from motionflow.cli.progress import RunProgress
            from motionflow.engine import execute

            generations = None
            if team is not None:  # paid submits take the team's lease first
                from motionflow.engine.generation import open_generations

                generations = functools.partial(
                    open_generations, options=options, publish=publish, leases=team.leases()
                )
            backend = None
            if executor != "local":  # paid generations stay here whatever the executor
                from motionflow.engine.dask import open_backend

                # with a remote, blobs go to a scheduler's workers through it, by digest
                remote_spec = team.choice.spec if team is not None else None
                backend = open_backend(executor, cache_root=cache.root, remote=remote_spec)
            started = time.time()
            with RunProgress(console, len(planned.items), quiet=quiet, as_json=as_json) as progress:
                result = asyncio.run(
                    _execute_on(
                        backend,
                        jobs,
                        functools.partial(
                            execute,
                            planned,
                            cache,
                            reporter=progress,
                            max_usd=limit,
                            generation=options,
                            publish=publish,
                            approve=approval,
                            generations=generations,
                        ),
                    )
                )
            write_stamp(planned, result, cache, list(var), allow_outside_project, targets.to_json())
        finally:
            try:
                if team is not None:  # the pushes still under way finish first
                    problems = team.close()  # what the remote refused or missed
                    if result is not None:
                        result.remote = team.summary(problems)
            finally:
                cache.close()
    assert result is not None  # handle_errors exits on any failure above
    # the gallery, refreshed when this run made something, shows other vars than the last
    # recorded run (all cached, yet other results in out/), or there is none yet
    fresh = result.executed or _gallery_stale(loaded)
    if not no_report and result.outputs and fresh:
        from motionflow.cli.report import report_after_run

        report_after_run(loaded, cache_dir, started)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        _print_result(result, planned, console)
    if approval is not None and approval.refused:
        die(UsageError(_refused_during_run(approval.refused, plan_file or "")))
    sys.exit(result.exit_code)


async def _execute_on(
    backend: Any, jobs: int | None, execute: Callable[..., Coroutine[Any, Any, RunResult]]
) -> RunResult:
    """Run ``execute`` here (``backend`` None) or on a Dask backend, closed afterwards.

    The Dask client lives on this event loop: it connects, runs and closes inside it. Without
    ``--jobs``, twice the cluster's worker threads are kept busy (each waits on I/O too).
    """
    if backend is None:
        return await execute(jobs=jobs)
    try:
        threads = await backend.connect()
        return await execute(jobs=jobs or 2 * threads, backend=backend)
    finally:
        await backend.aclose()


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
