"""``motionflow jobs`` (list, ``collect``, ``adopt``) and ``spend``: the journal of paid jobs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from motionflow.cli.errors import handle_errors
from motionflow.cli.format import age, clip, make_console, money
from motionflow.cli.options import cache_option, cache_root

__all__ = ["jobs", "spend"]

_STATES = ["submitting", "submitted", "completed", "stored", "in_doubt", "failed", "lost"]


def _has_key() -> bool:
    return bool(os.environ.get("EMPIRIOLABS_API_KEY", "").strip())


async def _candidates(root: Path) -> tuple[dict[str, list[Any]], str]:
    """Candidate charges for every in-doubt record, and a note on how complete they are."""
    import httpx

    from motionflow.cache.journal import Journal
    from motionflow.providers.empiriolabs import EmpirioLabsClient
    from motionflow.providers.usage import candidates, claimed_by, read_usage

    journal = Journal(root)
    everything = journal.all(archived=True)
    doubts = [r for r in journal.all() if r.state == "in_doubt" and r.provider != "simulate"]
    if not doubts:
        return {}, ""
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0)) as http:
        client = EmpirioLabsClient.from_env(http)
        view = await read_usage(client, doubts)
    if view is None:
        return {}, "the account usage could not be read"
    claimed = claimed_by(everything)
    found = {r.key: candidates(r, view, claimed) for r in doubts}
    note = "" if view.complete else "the usage API's pages were cut: the list may be partial"
    return found, note


@click.group(invoke_without_command=True)
@cache_option
@click.option("--all", "show_all", is_flag=True, help="Also list jobs replaced by a resubmit.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(_STATES),
    help="Only jobs in this state (repeatable).",
)
@click.option("--offline", is_flag=True, help="Do not read the account usage for jobs in doubt.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@click.pass_context
def jobs(
    ctx: click.Context,
    cache_dir: str | None,
    show_all: bool,
    states: tuple[str, ...],
    offline: bool,
    as_json: bool,
) -> None:
    """List paid jobs: in flight, in doubt (with candidate charges), failed, lost and done.

    For each submit in doubt, the account's charges around its time that no journal record
    claims are listed as candidates (time, cost, video URL) when EMPIRIOLABS_API_KEY is set:
    look at the video, then attach the right one with `motionflow jobs adopt`.
    """
    ctx.ensure_object(dict)
    ctx.obj["cache_dir"] = cache_dir
    if ctx.invoked_subcommand is not None:
        return
    from rich.markup import escape

    from motionflow.cli.tables import WIDE, Column, print_table
    from motionflow.ledger import job_rows

    root = cache_root(cache_dir)
    with handle_errors():
        rows = [r for r in job_rows(root, archived=show_all) if not states or r.state in states]
        found: dict[str, list[Any]] = {}
        note = ""
        doubtful = any(r.state == "in_doubt" and not r.archived and not r.free for r in rows)
        if doubtful and not offline and _has_key():
            _need_key()
            found, note = asyncio.run(_candidates(root))
    if as_json:
        out = []
        for r in rows:
            item = r.to_json()
            if r.state == "in_doubt" and not r.archived:
                item["candidates"] = [c.to_json() for c in found.get(r.key, [])]
            out.append(item)
        click.echo(json.dumps(out))
        return
    if not rows:
        make_console().print("No jobs in the journal.")
        return
    wide = WIDE  # below it, provider, recipe and the note give way; one cost column
    columns = (
        Column("state", "id"),
        Column("job id", "id"),  # copied from here: never cut
        Column("provider", min_console=wide),
        Column("recipe", min_console=wide),
        Column("instance", min_width=12),
        Column("age", "age"),
        Column("estimate", "money", min_console=wide),
        Column("charged", "money", min_console=wide),
        Column("cost", "money", max_console=wide),
        Column("note", min_console=wide),
    )
    colours = {"in_doubt": "red", "failed": "red", "lost": "red", "stored": "green"}
    cells = []
    for r in rows:
        state = r.state + (" (replaced)" if r.archived else "")
        colour = colours.get(r.state, "yellow")
        charged = "-" if r.actual_usd is None else money(r.actual_usd)
        estimate = "free" if r.free else money(r.estimated_usd)
        cells.append(
            (
                f"[{colour}]{escape(state)}[/]",
                escape(r.job_id or "-"),
                escape(r.provider),
                escape(r.recipe),
                escape(r.label),
                age(r.age_seconds),
                estimate,
                "$0.00" if r.free else charged,
                estimate if r.free else f"~{estimate}" if r.actual_usd is None else charged,
                escape(clip(r.error, 60)),
            )
        )
    console = make_console()
    print_table(console, columns, cells, title=f"jobs ({root / 'journal'})")
    if console.width < wide:
        notes = [r for r in rows if r.error]
        for r in notes:
            console.print(
                f"{escape(r.job_id or r.label)}: {escape(clip(r.error, 60))}", soft_wrap=False
            )
        console.print(
            "cost: what was charged, or ~ the estimate while unknown. Wider terminals "
            f"({wide}+ columns) also show provider, recipe and notes.",
            soft_wrap=False,
        )
    for r in rows:
        if r.state != "in_doubt" or r.archived or r.free:
            continue
        options = found.get(r.key)
        if options:
            console.print(f"[bold]{escape(r.label)}[/] ({r.key[:12]}): charges around its submit:")
            for c in options:
                cost = "?" if c.cost_usd is None else money(c.cost_usd)
                urls = ", ".join(c.output_urls) or "no video listed"
                console.print(
                    f"  event {escape(c.event_id)}  {c.created_at} ({c.offset_seconds:+.0f} s)  "
                    f"{cost}  {escape(c.status)} {escape(c.mode)}  {escape(urls)}"
                )
            console.print(
                f"  if one is this job's video: motionflow jobs adopt {r.key[:12]} --event ID"
            )
        elif doubtful and not offline and _has_key():
            console.print(f"{escape(r.label)} ({r.key[:12]}): no unclaimed charge around its time")
    if note:
        console.print(f"[yellow]note:[/] {note}")
    if doubtful and (offline or not _has_key()):
        console.print(
            "Set EMPIRIOLABS_API_KEY (and drop --offline) to see the account's charges around "
            "each submit in doubt.",
            soft_wrap=False,  # prose: wrapped at words
        )
    stuck = [r for r in rows if not r.archived and r.state in {"in_doubt", "failed", "lost"}]
    if stuck:
        console.print(
            "Jobs in doubt, failed or lost are never paid for again by themselves: adopt a "
            "charge (motionflow jobs adopt), or run with --resubmit-in-doubt, --retry-failed or "
            "--resubmit-lost (see docs/generation.md).",
            soft_wrap=False,  # prose: wrapped at words
        )


def _exit_for(problems: list[str]) -> None:
    console = make_console(stderr=True)
    for problem in problems:
        console.print(f"[yellow]pending[/] {problem}", highlight=False, markup=False)
    sys.exit(1 if problems else 0)


async def _collect(root: Path, only: set[str] | None = None) -> tuple[int, list[str]]:
    from motionflow.cache.store import Cache
    from motionflow.providers.session import (
        IN_FLIGHT,
        GenerationSession,
        options_from_env,
    )

    cache = Cache(root)
    try:
        options = options_from_env()
        session = GenerationSession("empiriolabs", cache, cache, None, options, lambda _e: None)
        try:
            skip: set[str] = set()
            if only is not None:
                from motionflow.cache.journal import Journal

                skip = {r.key for r in Journal(root).all() if r.state in IN_FLIGHT} - only
            return await session.collect_pending(skip)
        finally:
            await session.aclose()
    finally:
        cache.close()


def _need_key() -> None:
    from motionflow.errors import UsageError
    from motionflow.providers.settings import check_api_key

    if not _has_key():
        msg = (
            "collecting paid jobs needs the account's API key: set EMPIRIOLABS_API_KEY "
            "(sk-empiriolabs-...); nothing was changed"
        )
        raise UsageError(msg)
    check_api_key(os.environ["EMPIRIOLABS_API_KEY"].strip())


@jobs.command("collect")
@click.option("--json", "as_json", is_flag=True, help="Print what was collected as JSON.")
@click.pass_context
def collect(ctx: click.Context, as_json: bool) -> None:
    """Fetch every paid job in flight (any recipe, any vars) into the cache; submits nothing.

    The service keeps a finished job for one hour: collect jobs left by an interrupted run
    within that hour. Exit 1 when some job could not be fetched yet (it is not lost).
    """
    root = cache_root(ctx.obj.get("cache_dir"))
    with handle_errors():
        _need_key()
        done, problems = asyncio.run(_collect(root))
    if as_json:
        click.echo(json.dumps({"collected": done, "pending": problems}))
        sys.exit(1 if problems else 0)
    click.echo(f"Collected {done} paid job(s) into the cache; 0 jobs submitted.")
    _exit_for(problems)


@jobs.command("adopt")
@click.argument("key")
@click.option("--event", "event_id", help="A usage event listed by `motionflow jobs`.")
@click.option("--job", "job_id", help="The job id, if you know it (e.g. from the dashboard).")
@click.pass_context
def adopt(ctx: click.Context, key: str, event_id: str | None, job_id: str | None) -> None:
    """Attach a charge to a submit in doubt (KEY: the first characters of its key).

    Look at the candidate's video first (`motionflow jobs` lists it): once adopted, that video
    is this generation's paid result. Then the video is fetched into the cache.
    """
    from motionflow.errors import UsageError

    root = cache_root(ctx.obj.get("cache_dir"))
    with handle_errors():
        if (event_id is None) == (job_id is None):
            msg = "say which charge to adopt: --event ID (from `motionflow jobs`) or --job ID"
            raise UsageError(msg)
        _need_key()
        label, full = asyncio.run(_adopt(root, key, event_id, job_id))
        done, problems = asyncio.run(_collect(root, only={full}))
    what = f"event {event_id}" if event_id else f"job {job_id}"
    click.echo(f"Adopted {what} for {label}; collected {done} video(s); 0 jobs submitted.")
    _exit_for(problems)


async def _adopt(
    root: Path, prefix: str, event_id: str | None, job_id: str | None
) -> tuple[str, str]:
    import httpx

    from motionflow.cache.journal import Journal
    from motionflow.cache.locks import key_lock
    from motionflow.errors import UsageError
    from motionflow.providers.empiriolabs import EmpirioLabsClient
    from motionflow.providers.usage import claimed_by, read_usage

    journal = Journal(root)
    matches = [r for r in journal.all() if r.key.startswith(prefix) and r.state == "in_doubt"]
    if len(matches) != 1:
        how = "no" if not matches else f"{len(matches)}"
        msg = (
            f"{how} job in doubt has a key starting with {prefix!r}; `motionflow jobs "
            "--state in_doubt` lists them with their keys"
        )
        raise UsageError(msg)
    record = matches[0]
    everything = journal.all(archived=True)
    async with key_lock(root, record.key):
        current = journal.get(record.key)
        if current is None or current.started_at != record.started_at:
            msg = f"the record of {record.label} changed meanwhile; list the jobs again"
            raise UsageError(msg)
        if job_id is not None:
            if any(r.job_id == job_id for r in everything):
                msg = f"job {job_id!r} already belongs to another journal record; not adopted"
                raise UsageError(msg)
            journal.advance(current, "submitted", job_id=job_id)
            return current.label, current.key
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0)) as http:
            client = EmpirioLabsClient.from_env(http)
            view = await read_usage(client, [current])
        if view is None:
            msg = "the account usage could not be read; nothing was adopted"
            raise UsageError(msg)
        event = next((e for e in view.events if e.event_id == event_id), None)
        if event is None:
            msg = (
                f"the account usage has no charge {event_id!r} near this submit; "
                "`motionflow jobs` lists the candidates"
            )
            raise UsageError(msg)
        if not event.output_urls:
            msg = (
                f"charge {event_id!r} has no video to look at yet (status {event.status!r}); "
                "adopt it once `motionflow jobs` lists its video"
            )
            raise UsageError(msg)
        claimed = claimed_by(everything)
        if event_id in claimed or any(u.split("?")[0] in claimed for u in event.output_urls):
            msg = f"charge {event_id!r} already belongs to another journal record; not adopted"
            raise UsageError(msg)
        journal.advance(
            current,
            "completed",
            output_urls=event.output_urls,
            actual_usd=event.cost_usd,
            adopted_event=event_id,
            error=f"{current.error or ''} [adopted usage event {event_id} by the user]".strip(),
        )
        return current.label, current.key


@click.command()
@cache_option
@click.option(
    "--by",
    type=click.Choice(["recipe", "stage", "day"]),
    default="recipe",
    show_default=True,
    help="How to group the paid jobs.",
)
@click.option("--simulated", is_flag=True, help="Include simulated (free) jobs, at $0.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def spend(cache_dir: str | None, by: str, simulated: bool, as_json: bool) -> None:
    """Summarise what paid jobs cost, by recipe, stage or day (from the journal)."""
    from rich.markup import escape

    from motionflow.cli.tables import Column, print_table
    from motionflow.ledger import spend_rows

    root = cache_root(cache_dir)
    with handle_errors():
        rows = spend_rows(root, by=by, simulated=simulated)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows]))
        return
    console = make_console()
    if not rows:
        console.print("No paid jobs in the journal.")
        return
    columns = (
        Column(by, min_width=10),  # the only column that gives way: amounts stay whole
        Column("jobs", "number"),
        Column("estimated", "money"),
        Column("charged", "money"),
        Column("in doubt", "money"),
    )
    cells: list[tuple[str, ...]] = []
    for r in rows:
        note = f" ({r.unconfirmed} est.)" if r.unconfirmed else ""
        doubt = f"{r.in_doubt} (up to {money(r.in_doubt_usd)})" if r.in_doubt else "-"
        cells.append(
            (
                escape(r.group),
                str(r.jobs),
                money(r.estimated_usd),
                money(r.charged_usd) + note,
                doubt,
            )
        )
    total = sum(r.charged_usd for r in rows)
    cells.append(
        ("[bold]total[/]", str(sum(r.jobs for r in rows)), "", f"[bold]{money(total)}[/]", "")
    )
    caption = (
        "(n est.): n jobs counted at their estimate" if any(r.unconfirmed for r in rows) else None
    )
    print_table(console, columns, cells, title=f"spend by {by}", caption=caption)
