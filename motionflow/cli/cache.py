"""``motionflow cache``: ls, du, verify, gc, export, import, forget, push, pull, status.

push, pull and status (the team's remote cache) live in :mod:`motionflow.cli.cache_remote`,
which builds on the helpers here; the group loads them when click asks for them.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from motionflow.cli.errors import handle_errors
from motionflow.cli.format import age, format_size, make_console, money
from motionflow.cli.lazy import LazyGroup
from motionflow.cli.options import cache_option, open_cache

__all__ = [
    "REMOTE_COMMANDS",
    "CacheCommands",
    "cache",
    "json_option",
    "opened",
    "project_roots",
    "projects_option",
]


def projects_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--project`` (repeatable): the projects whose results are in use."""
    return click.option(
        "--project",
        "projects",
        multiple=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="A project whose out/*/manifest.json results are in use (repeatable) "
        "[default: the project around the current folder].",
    )(func)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: print JSON instead of text."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def project_roots(projects: tuple[Path, ...]) -> list[Path]:
    """The roots of the ``--project`` folders, or of the project around the current folder."""
    from motionflow.project import find_project_root

    if projects:
        return [p.resolve() for p in projects]
    return [find_project_root(Path.cwd().resolve())]


@contextlib.contextmanager
def opened(cache_dir: str | None) -> Iterator[Any]:
    """The cache at ``cache_dir`` (or the default), closed afterwards."""

    store = open_cache(cache_dir)
    try:
        yield store
    finally:
        store.close()


#: The commands of the team's remote cache: name -> ``module:attribute`` of its click command.
#: That module builds on this one's helpers, so this one imports it by name only, when click
#: asks for one of them (as motionflow/cli/app.py does for the top-level commands).
REMOTE_COMMANDS = {
    "pull": "motionflow.cli.cache_remote:pull",
    "push": "motionflow.cli.cache_remote:push",
    "status": "motionflow.cli.cache_remote:status",
}


class CacheCommands(LazyGroup):
    """The ``cache`` group; the commands of :data:`REMOTE_COMMANDS` are imported when needed."""

    lazy = REMOTE_COMMANDS


@click.group(cls=CacheCommands)
def cache() -> None:
    """Inspect and manage the cache: entries, sizes, integrity, garbage, sharing."""


@cache.command("ls")
@cache_option
@projects_option
@click.option("--paid", "paid_only", is_flag=True, help="Only results that stand for a job.")
@json_option
def ls(cache_dir: str | None, projects: tuple[Path, ...], paid_only: bool, as_json: bool) -> None:
    """List cached results: stage kind, size, age, what they cost, whether in use."""
    from rich.markup import escape

    from motionflow.cache.manage import list_entries
    from motionflow.cli.tables import Column, print_table
    from motionflow.engine.references import referenced_keys

    with handle_errors(), opened(cache_dir) as store:
        rows = list_entries(store, referenced_keys(store, project_roots(projects)))
    rows = [r for r in rows if r.paid or not paid_only]
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows]))
        return
    console = make_console()
    if not rows:
        console.print(f"The cache {store.root} holds no results.")
        return
    columns = (
        Column("key", "id"),  # a prefix `cache forget` takes
        Column("stage kind", "id"),
        Column("size", "number"),
        Column("age", "age"),
        Column("cost", "money"),
        Column("in use", "id"),
        Column("state", "id"),
    )
    cells = []
    for r in rows:
        state = {"ok": "[green]ok[/]", "corrupt": "[red]corrupt[/]"}.get(r.state, "[red]missing[/]")
        cells.append(
            (
                r.key[:12],
                escape(r.stage_kind),
                format_size(r.size),
                age(r.age_seconds),
                money(r.estimated_usd) if r.paid else "",
                "yes" if r.referenced else "",
                state,
            )
        )
    print_table(console, columns, cells, title=f"cache ({store.root})")
    paid = [r for r in rows if r.paid]
    console.print(
        f"{len(rows)} results, {format_size(sum(r.size for r in rows))}; {len(paid)} paid "
        f"({money(sum(r.estimated_usd for r in paid))})."
    )


@cache.command()
@cache_option
@json_option
def du(cache_dir: str | None, as_json: bool) -> None:
    """Show how much room the cache takes: paid results, intermediates, leftovers."""
    from motionflow.cache.manage import disk_usage
    from motionflow.cli.tables import Column, print_table

    with handle_errors(), opened(cache_dir) as store:
        usage = disk_usage(store)
    if as_json:
        click.echo(json.dumps(usage.to_json()))
        return
    rows = [
        ("paid results", format_size(usage.paid_bytes), f"{usage.paid_results} results"),
        (
            "intermediates",
            format_size(usage.intermediate_bytes),
            f"{usage.results - usage.paid_results} results",
        ),
        ("unused files", format_size(usage.orphan_bytes), "fetched inputs, leftovers"),
    ]
    for name, (files, size) in usage.folders.items():
        if name != "blobs":
            rows.append((f"{name}/", format_size(size), f"{files} files"))
    rows.append(("[bold]total[/]", f"[bold]{format_size(usage.total_bytes)}[/]", ""))
    columns = (Column("what"), Column("size", "number"), Column("note"))
    print_table(make_console(), columns, rows, title=f"cache ({usage.root})", show_header=False)
    make_console().print(f"The paid results cost {money(usage.paid_usd)} at the provider's price.")


@cache.command()
@cache_option
@json_option
def verify(cache_dir: str | None, as_json: bool) -> None:
    """Re-hash every stored file; quarantine corrupt ones (exit 1 when any is found).

    Free results that used a corrupt file are forgotten and recompute for free. Paid ones are
    marked: runs refuse to pay for them again until the file is imported back or the key is
    released with `motionflow cache forget`.
    """
    from rich.markup import escape

    from motionflow.cache.integrity import verify_blobs

    with handle_errors(), opened(cache_dir) as store:
        report = verify_blobs(store)
    if as_json:
        click.echo(json.dumps(report.to_json()))
        sys.exit(0 if report.ok else 1)
    console = make_console()
    for bad in report.corrupt:
        what = f"paid, {money(bad['usd'])}" if bad["paid"] else "free, recomputes"
        console.print(
            f"[red]corrupt[/] {bad['digest'][:19]}… ({what}; used by "
            f"{', '.join(k[:12] for k in bad['keys']) or 'no result'}) moved to "
            f"{escape(bad['quarantined'])}"
        )
    for key, digest in report.missing:
        console.print(f"[red]missing[/] {digest[:19]}… of result {key[:12]}")
    console.print(
        f"{report.checked} files checked ({format_size(report.checked_bytes)}): "
        f"{len(report.corrupt)} corrupt, {len(report.missing)} missing."
    )
    if any(bad["paid"] for bad in report.corrupt):
        console.print(
            "Paid results with a corrupt file are not generated again by themselves: restore "
            "them with `motionflow cache import FILE`, or release them with "
            "`motionflow cache forget KEY` to pay again."
        )
    sys.exit(0 if report.ok else 1)


@cache.command()
@cache_option
@projects_option
@click.option("--dry-run", "-n", is_flag=True, help="Only show what would go, and the cost.")
@click.option(
    "--include-paid",
    is_flag=True,
    help="Also remove unused paid results (paying for them again costs the amount shown).",
)
@click.option(
    "--max-intermediates",
    metavar="SIZE",
    help="Also remove in-use free results, oldest first, until they take at most SIZE (500M).",
)
@json_option
def gc(
    cache_dir: str | None,
    projects: tuple[Path, ...],
    dry_run: bool,
    include_paid: bool,
    max_intermediates: str | None,
    as_json: bool,
) -> None:
    """Remove results no project uses (free ones first) and files no result uses.

    In use means: named in an out/*/manifest.json of the scanned projects or in
    <cache>/roots.json. Paid results are kept unless --include-paid; paid results in use are
    always kept.
    """
    from rich.markup import escape

    from motionflow.cache.integrity import collect_garbage, parse_size
    from motionflow.engine.references import referenced_keys

    with handle_errors():
        quota = parse_size(max_intermediates) if max_intermediates is not None else None
        with opened(cache_dir) as store:
            report = collect_garbage(
                store,
                referenced_keys(store, project_roots(projects)),
                include_paid=include_paid,
                max_intermediate_bytes=quota,
                dry_run=dry_run,
            )
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    console = make_console()
    verb = "would remove" if dry_run else "removed"
    for r in report.removed:
        cost = f" [red]{money(r.estimated_usd)} paid[/]" if r.paid else ""
        what = f"{escape(r.stage_kind)} ({format_size(r.size)}){cost}"
        console.print(f"{verb} {r.key[:12]} {what}: {escape(r.why)}")
    console.print(
        f"{'Would remove' if dry_run else 'Removed'} {len(report.removed)} results and "
        f"{len(report.blobs)} files, {format_size(report.freed_bytes)}. Dollars at risk: "
        f"[bold]{money(report.usd_at_risk)}[/]."
    )
    if report.kept_paid:
        console.print(
            f"Kept {report.kept_paid} unused paid results ({money(report.kept_paid_usd)}); "
            "--include-paid removes them."
        )


@cache.command()
@cache_option
@click.argument("keys", nargs=-1, required=True)
@json_option
def forget(cache_dir: str | None, keys: tuple[str, ...], as_json: bool) -> None:
    """Drop results by key (or prefix), so the next run makes them again, paid ones too."""
    from motionflow.cache.integrity import forget as drop
    from motionflow.cache.manage import resolve_keys

    with handle_errors(), opened(cache_dir) as store:
        dropped = drop(store, resolve_keys(store, keys))
    if as_json:
        click.echo(json.dumps([{"key": k, "usd": round(u, 2)} for k, u in dropped]))
        return
    for key, usd in dropped:
        note = f"; the next run pays {money(usd)} again" if usd else "; the next run makes it again"
        make_console().print(f"forgot {key[:12]}{note}")


@cache.command("export")
@cache_option
@projects_option
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--recipe", "recipes", multiple=True, help="Results of this recipe (repeatable).")
@click.option("--key", "keys", multiple=True, help="A result key or prefix (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Every result in the cache.")
@json_option
def export_(
    cache_dir: str | None,
    projects: tuple[Path, ...],
    dest: Path,
    recipes: tuple[str, ...],
    keys: tuple[str, ...],
    everything: bool,
    as_json: bool,
) -> None:
    """Write selected results, their files and receipts to DEST (a .tar.gz) for a teammate."""
    from motionflow.cache.manage import list_entries, resolve_keys
    from motionflow.engine.references import export_results, recipe_keys
    from motionflow.errors import UsageError

    with handle_errors():
        if not (recipes or keys or everything):
            msg = "choose what to export: --recipe NAME, --key KEY or --all"
            raise UsageError(msg)
        with opened(cache_dir) as store:
            roots = project_roots(projects)
            wanted = resolve_keys(store, keys) if keys else []
            for name in recipes:
                wanted += [k for k in recipe_keys(roots, name) if k not in wanted]
            if everything:
                wanted = [e.key for e in list_entries(store)]
            report = export_results(store, dest, wanted, roots)
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    console = make_console()
    for key, why in report.skipped:
        console.print(f"[yellow]skipped[/] {key[:12]}: {why}")
    console.print(
        f"wrote {dest}: {len(report.keys)} results, {report.blobs} files, "
        f"{format_size(report.bytes)}; paid generations worth {money(report.paid_usd)}."
    )


@cache.command("import")
@cache_option
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def import_(cache_dir: str | None, src: Path, as_json: bool) -> None:
    """Add the results of an export, checking every file's digest; never overwrites."""
    from motionflow.engine.references import import_results

    with handle_errors(), opened(cache_dir) as store:
        report = import_results(store, src)
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    from rich.markup import escape

    console = make_console()
    for key in report.added:
        console.print(f"[green]added[/] {key[:12]}")
    for key in report.restored:
        console.print(f"[green]restored[/] {key[:12]}: its lost or quarantined file is back")
    for key in report.present:
        console.print(f"present {key[:12]}: already in this cache, intact (nothing to do)")
    for key, why in report.skipped:
        console.print(f"[yellow]skipped[/] {key[:12]}: {escape(why)}")
    for key in report.conflicts:
        console.print(
            f"[yellow]kept[/] {key[:12]}: this cache holds other files for it (not overwritten; "
            f"`motionflow cache forget {key[:12]}` first to take the imported one)"
        )
    console.print(
        f"imported {len(report.added)} results, restored {len(report.restored)}, "
        f"{len(report.present)} already present, {len(report.skipped)} skipped, "
        f"{len(report.conflicts)} kept; {report.blobs} files stored; paid "
        f"generations worth {money(report.paid_usd)} need not be paid again."
    )
