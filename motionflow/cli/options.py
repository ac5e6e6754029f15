"""The options commands share, and the recipe, cache and plan their values stand for."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from motionflow.cli.errors import handle_errors
from motionflow.errors import UsageError

if TYPE_CHECKING:
    from motionflow.plan import Plan
    from motionflow.recipe.loader import Recipe
    from motionflow.targets import Targets

__all__ = [
    "cache_option",
    "cache_root",
    "load",
    "max_usd_option",
    "open_cache",
    "open_remote",
    "plan_recipe",
    "publish_from_cli",
    "recipe_options",
    "remote_options",
    "target_options",
    "targets_from",
]


def recipe_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The ``RECIPE`` argument, ``--var NAME=VALUE`` (repeatable), ``--allow-outside-project``."""
    func = click.option(
        "--allow-outside-project",
        is_flag=True,
        help="Allow recipe input paths outside the project folder.",
    )(func)
    func = click.option(
        "--var", "var", multiple=True, metavar="NAME=VALUE", help="Override a recipe var."
    )(func)
    return click.argument("recipe", type=click.Path(dir_okay=False))(func)


def target_options(func: Callable[..., Any]) -> Callable[..., Any]:
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


def cache_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--cache DIR`` (env ``MOTIONFLOW_CACHE``), passed as ``cache_dir``."""
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


def max_usd_option(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--max-usd USD``, a budget (checked: finite and >= 0) that replaces budget.max_usd."""
    return click.option("--max-usd", metavar="USD", callback=_dollars, help=text)


def targets_from(only: tuple[str, ...], target_stages: tuple[str, ...]) -> Targets:
    """The targets of ``--only`` and ``--stage``."""
    from motionflow.targets import Targets

    return Targets(tuple(only), tuple(target_stages))


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


def load(recipe: str, var: tuple[str, ...], allow_outside: bool) -> Recipe:
    """The recipe at ``recipe`` with the ``--var`` overrides, every problem collected.

    Raises:
        click.BadParameter: a ``--var`` is not ``NAME=VALUE``.
    """
    from motionflow.recipe.loader import load_recipe

    return load_recipe(
        recipe,
        overrides=_parse_vars(var),
        allow_outside_project=allow_outside,
        keep_going=True,
    )


def cache_root(cache_dir: str | None) -> Path:
    """The folder of ``--cache``, or the default cache folder."""
    from motionflow.cache.store import default_cache_dir

    return Path(cache_dir) if cache_dir else default_cache_dir()


def remote_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--remote URL`` and ``--no-remote``: the team's shared cache (docs/team.md)."""
    func = click.option(
        "--no-remote",
        is_flag=True,
        help="Work without the shared remote cache, whatever the config says.",
    )(func)
    return click.option(
        "--remote",
        metavar="s3://BUCKET/PREFIX",
        help="Shared remote cache [env MOTIONFLOW_REMOTE; motionflow.toml [cache] remote].",
    )(func)


def open_remote(cache: Any, project_root: Path, remote: str | None, no_remote: bool) -> Any:
    """Attach the chosen remote cache to ``cache``; the :class:`~motionflow.engine.team.Team`,
    or None when no remote is configured. Nothing is contacted yet.

    Raises:
        UsageError: the URL or the project config is wrong, or boto3 is missing.
    """
    from motionflow.cache.remote_config import remote_choice

    choice = remote_choice(remote, disabled=no_remote, project_root=project_root)
    if choice is None:
        return None
    from motionflow.engine.team import open_team

    return open_team(choice, cache)


def open_cache(cache_dir: str | None) -> Any:
    """The cache at ``--cache`` (or the default); the caller closes it."""
    from motionflow.cache.store import Cache

    return Cache(cache_root(cache_dir))


@contextlib.contextmanager
def planning_gc() -> Iterator[None]:
    """No garbage collection while loading or planning; what was made is then frozen.

    A plan is hundreds of thousands of long-lived objects that live until the process ends.
    Collecting while they are made cost a third of a 100,000-variant plan, and more per
    variant the bigger the plan (each pass scans what is already there); frozen, no later
    pass (during the run) scans them again. The process is short-lived; the library leaves
    the interpreter's settings alone.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def plan_recipe(
    recipe: str,
    var: tuple[str, ...],
    allow_outside: bool,
    cache_dir: str | None,
    targets: Targets | None = None,
    *,
    preview: bool = False,
    remote: tuple[str | None, bool] = (None, False),
    rebuild_on_tool_change: bool = False,
) -> tuple[Recipe, Plan]:
    """Load and plan a recipe; a problem is reported and exits (see ``handle_errors``).

    ``preview`` plans through a cache that is only read (``why`` and ``impact`` write
    nothing to it). ``remote`` is ``(--remote, --no-remote)``: a miss asks the team's remote
    cache (not while previewing, which writes nothing).
    """
    from motionflow.providers.pricing import price_table
    from motionflow.targets import targeted_plan

    with handle_errors(), planning_gc():
        loaded = load(recipe, var, allow_outside)
        price_table()  # a broken MOTIONFLOW_PRICES is refused before the cache is opened
        if preview:
            from motionflow.why import PreviewCache

            cache = PreviewCache(cache_root(cache_dir))
        else:
            cache = open_cache(cache_dir)
        team = None if preview else open_remote(cache, loaded.root, *remote)
        try:
            planned = targeted_plan(
                loaded, cache, targets, rebuild_on_tool_change=rebuild_on_tool_change
            )
            return loaded, planned
        finally:
            try:
                if team is not None:  # what the remote refused or could not give: on stderr
                    for problem in team.close():
                        click.echo(f"warning: {problem}", err=True)
            finally:
                cache.close()
    raise AssertionError  # pragma: no cover - handle_errors() exits


def publish_from_cli(kind: str | None, options: tuple[str, ...]) -> Any:
    """The ``--publish KIND --publish-option key=value ...`` spec, or None without ``kind``.

    It validates against the recipe's publisher models (``recipe.schema.PublishSpec``), so a
    flag is checked exactly like a recipe's ``publish:``.

    Raises:
        UsageError: an option is not ``key=value`` or the spec is invalid for ``kind``.
    """
    if kind is None:
        if options:
            msg = "--publish-option needs --publish KIND (url, static, s3, empiriolabs-upload)"
            raise UsageError(msg)
        return None
    data: dict[str, Any] = {"kind": kind}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name.strip():
            msg = f"--publish-option {option!r} is not key=value, e.g. base_url=https://cdn/x"
            raise UsageError(msg)
        data[name.strip().replace("-", "_")] = value
    from pydantic import TypeAdapter, ValidationError

    from motionflow.recipe.schema import PublishSpec

    try:
        return TypeAdapter(PublishSpec).validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'kind'}: {e['msg']}" for e in exc.errors()
        )
        msg = f"--publish {kind}: {problems}. See docs/publishers.md"
        raise UsageError(msg) from exc
