"""``motionflow cache push``, ``pull`` and ``status``: the team's remote cache (docs/team.md).

The commands belong to the ``cache`` group of :mod:`motionflow.cli.cache`, which loads this
module when click asks for one of them (``REMOTE_COMMANDS`` there).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from motionflow.cli.cache import json_option, opened, project_roots, projects_option
from motionflow.cli.errors import handle_errors
from motionflow.cli.format import format_size, make_console
from motionflow.cli.options import cache_option, open_remote, remote_options

__all__ = ["pull", "push", "status"]

_NO_REMOTE = (
    "no remote cache is configured; pass --remote s3://BUCKET/PREFIX, set MOTIONFLOW_REMOTE, or "
    'add [cache] remote = "s3://BUCKET/PREFIX" to the project\'s motionflow.toml (docs/team.md)'
)


@contextlib.contextmanager
def _with_remote(cache_dir: str | None, remote: str | None, no_remote: bool) -> Iterator[Any]:
    """The cache and its :class:`~motionflow.engine.team.Team`; both closed afterwards.

    Raises:
        UsageError: no remote is configured (or ``--no-remote``), or the configuration is wrong.
    """
    from motionflow.errors import UsageError
    from motionflow.project import find_project_root

    with opened(cache_dir) as store:
        team = open_remote(store, find_project_root(Path.cwd().resolve()), remote, no_remote)
        if team is None:
            raise UsageError(_NO_REMOTE)
        try:
            yield store, team
        finally:
            team.close()  # its problems are reported by the command itself


@contextlib.contextmanager
def _bar(what: str, total: int, as_json: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar on stderr (none with --json or off a terminal); yields its step."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = make_console(stderr=True)
    shown = not as_json and console.is_terminal and total > 1
    with Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not shown,
    ) as progress:
        task = progress.add_task(what, total=total)
        yield lambda _key: progress.advance(task)


def _warn_all(problems: list[str]) -> None:
    from rich.markup import escape

    err = make_console(stderr=True)
    for problem in problems:
        err.print(f"[yellow]warning:[/] {escape(problem)}")


@click.command("push")
@cache_option
@remote_options
@projects_option
@click.option("--key", "keys", multiple=True, help="A result key or prefix (repeatable).")
@click.option("--recipe", "recipes", multiple=True, help="Results of this recipe (repeatable).")
@click.option(
    "--all", "everything", is_flag=True, help="Every shared result, checking each file is there."
)
@json_option
def push(
    cache_dir: str | None,
    remote: str | None,
    no_remote: bool,
    projects: tuple[Path, ...],
    keys: tuple[str, ...],
    recipes: tuple[str, ...],
    everything: bool,
    as_json: bool,
) -> None:
    """Send results to the team's remote cache: by default every shared one it lacks.

    Files go up before their record. --key also repairs a damaged remote copy: its files are
    uploaded again and a remote record that differs is replaced.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from motionflow.cache.manage import raw_record, resolve_keys
    from motionflow.cache.objects import RemoteError
    from motionflow.engine.references import recipe_keys
    from motionflow.errors import CacheError

    pushed: list[str] = []
    present: list[str] = []
    skipped: list[list[str]] = []
    failed: list[str] = []
    repaired: list[str] = []
    with handle_errors(), _with_remote(cache_dir, remote, no_remote) as (store, team):
        shared = team.remote
        if keys or recipes:
            wanted = resolve_keys(store, keys) if keys else []
            roots = project_roots(projects)
            for name in recipes:
                wanted += [k for k in recipe_keys(roots, name) if k not in wanted]
        else:
            local = shared.local_shared()
            held = {} if everything else shared.remote_keys()
            wanted = [k for k in local if k not in held]
        todo: list[tuple[str, dict[str, Any]]] = []
        for key in wanted:
            record = raw_record(store, key)
            if record is None:
                skipped.append([key, "not in the cache"])
            elif not shared.shares(record):
                skipped.append([key, f"not shared under share = {shared.share!r} (docs/team.md)"])
            else:
                todo.append((key, record))
        repair = set(resolve_keys(store, keys)) if keys else set()
        failures: list[RemoteError] = []

        def one(key: str, record: dict[str, Any]) -> str:
            if failures:
                return "cancelled"  # the remote failed: the others would fail the same way
            done = shared.push(key, record, check_blobs=everything, repair=key in repair)
            return "pushed" if done else "repaired" if key in repair else "present"

        with _bar("pushing", len(todo), as_json) as step, ThreadPoolExecutor(8) as pool:
            futures = {pool.submit(one, key, record): key for key, record in todo}
            for future in as_completed(futures):
                key = futures[future]
                step(key)
                try:
                    what = future.result()
                except RemoteError as exc:
                    failures.append(exc)
                except CacheError as exc:  # a file missing here
                    skipped.append([key, str(exc)])
                    failed.append(key)
                else:
                    if what == "pushed":
                        pushed.append(key)
                    elif what == "repaired":
                        repaired.append(key)
                    elif what == "present":
                        present.append(key)
        if failures:
            raise failures[0]
        url = shared.store.where()
        sent_bytes = shared.pushed_bytes
    if as_json:
        body = {
            "remote": url,
            "pushed": pushed,
            "repaired": repaired,
            "present": present,
            "skipped": skipped,
            "pushed_bytes": sent_bytes,
        }
        click.echo(json.dumps(body))
        sys.exit(1 if failed else 0)
    from rich.markup import escape

    console = make_console()
    for key, why in skipped:
        console.print(f"[yellow]skipped[/] {key[:12]}: {escape(why)}")
    for key in repaired:
        console.print(f"repaired {key[:12]}: its files were uploaded again (its record was there)")
    console.print(
        f"pushed {len(pushed)} results ({format_size(sent_bytes)}) to {escape(url)}; "
        f"{len(present)} were there already, {len(skipped)} skipped."
    )
    sys.exit(1 if failed else 0)


@click.command("pull")
@cache_option
@remote_options
@click.option("--key", "keys", multiple=True, help="A result key or prefix (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Everything shared (the default).")
@json_option
def pull(
    cache_dir: str | None,
    remote: str | None,
    no_remote: bool,
    keys: tuple[str, ...],
    everything: bool,
    as_json: bool,
) -> None:
    """Fetch results from the team's remote cache: by default all it holds that this one lacks.

    Every record is checked and every file's size and digest verified before it is stored;
    what fails is refused (exit 1). Only what the share policy takes comes down.
    """
    from motionflow.errors import UsageError

    del everything  # the default: every result the remote holds
    with handle_errors(), _with_remote(cache_dir, remote, no_remote) as (store, team):
        shared = team.remote
        held = shared.remote_keys()
        if keys:
            wanted: list[str] = []
            for text in keys:
                prefix = text.strip().lower()
                matches = [k for k in held if k.startswith(prefix)] if len(prefix) >= 8 else []
                if len(matches) != 1:
                    why = (
                        "is shorter than 8 characters"
                        if len(prefix) < 8
                        else f"matches {len(matches)} results"
                    )
                    msg = f"key {text!r} {why} on the remote cache {shared.store.where()}"
                    raise UsageError(msg)
                wanted.append(matches[0])
        else:
            wanted = list(held)
        local = store.get_results(wanted, remote=False)
        todo = [k for k in wanted if k not in local]
        with _bar("pulling", len(todo), as_json) as step:
            got = shared.pull(todo, refresh=True, on_done=step)
        if shared.offline is not None:
            from motionflow.cache.objects import RemoteError

            raise RemoteError(shared.offline)
        pulled = [k for k in todo if k in got]
        refused = [[k, shared.damaged[k]] for k in todo if k in shared.damaged]
        skipped = [k for k in todo if k not in got and k not in shared.damaged]
        url = shared.store.where()
        size = shared.pulled_bytes
        problems = [p for p in shared.problems if not p.startswith("refused ")]
    if as_json:
        body = {
            "remote": url,
            "pulled": pulled,
            "pulled_bytes": size,
            "present": [k for k in wanted if k in local],
            "skipped": skipped,
            "refused": refused,
        }
        click.echo(json.dumps(body))
        sys.exit(1 if refused else 0)
    from rich.markup import escape

    console = make_console()
    for key, why in refused:
        console.print(f"[red]refused[/] {key[:12]}: {escape(why)}")
    _warn_all(problems)
    console.print(
        f"pulled {len(pulled)} results ({format_size(size)}) from {escape(url)}; "
        f"{len(wanted) - len(todo)} were here already, {len(skipped)} not taken (not shared "
        f"under share = {shared.share!r}, or another take is kept here), {len(refused)} refused."
    )
    sys.exit(1 if refused else 0)


@click.command("status")
@cache_option
@remote_options
@json_option
def status(cache_dir: str | None, remote: str | None, no_remote: bool, as_json: bool) -> None:
    """Compare this cache with the team's remote cache: only here, only there, in both."""
    from rich.markup import escape

    from motionflow.cli.tables import Column, print_table

    with handle_errors(), _with_remote(cache_dir, remote, no_remote) as (_, team):
        report = team.remote.status()
        origin = team.choice.origin
    if as_json:
        click.echo(json.dumps({**report.to_json(), "origin": origin}))
        return
    console = make_console()
    rows = [
        ("only here", str(len(report.local_only)), format_size(report.local_only_bytes)),
        ("only on the remote", str(len(report.remote_only)), format_size(report.remote_only_bytes)),
        ("in both", str(len(report.both)), format_size(report.both_bytes)),
    ]
    columns = (Column("results"), Column("count", "number"), Column("size", "number"))
    print_table(console, columns, rows, title=f"remote cache {escape(report.url)}")
    at = f" at {report.endpoint}" if report.endpoint else ""
    console.print(
        f"Remote: {escape(report.url + at)} (from {escape(origin)}), share = {report.share!r}; "
        f"it holds {format_size(report.remote_bytes)}."
    )
    if report.local_only:
        console.print("`motionflow cache push` sends what is only here.")
