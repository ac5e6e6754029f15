"""motionflow: declarative, cached, budget-aware pipelines for Kling v3 Motion Control videos.

The library never prints or exits; it returns results and emits typed events
(:mod:`motionflow.events`). The ``motionflow`` command is a thin layer over these functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["__version__", "load_recipe", "plan", "run"]

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from motionflow.engine import RunResult
    from motionflow.events import Event
    from motionflow.plan import Plan, PlannedInstance
    from motionflow.recipe.loader import Recipe


def load_recipe(
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    allow_outside_project: bool = False,
) -> Recipe:
    """Read and validate a recipe (see :func:`motionflow.recipe.loader.load_recipe`)."""
    from motionflow.recipe.loader import load_recipe as _load

    return _load(path, overrides=overrides, allow_outside_project=allow_outside_project)


def plan(recipe: Recipe, *, cache_dir: Path | None = None) -> Plan:
    """Plan a run: every instance's status, reason and estimated cost. Nothing runs.

    Raises:
        RecipeError: every problem of the recipe, located.
    """
    from motionflow.cache.store import Cache, default_cache_dir
    from motionflow.plan import make_plan

    cache = Cache(cache_dir or default_cache_dir())
    try:
        return make_plan(recipe, cache)
    finally:
        cache.close()


async def run(
    recipe: Recipe,
    *,
    cache_dir: Path | None = None,
    jobs: int | None = None,
    max_usd: float | None = None,
    reporter: Callable[[Event], None] | None = None,
    approve: Callable[[PlannedInstance, Any], str | None] | None = None,
) -> RunResult:
    """Plan and execute a recipe; reuses every cached result and pays for misses only.

    Args:
        recipe: a loaded recipe.
        cache_dir: the cache directory (default: ``MOTIONFLOW_CACHE`` or the user cache).
        jobs: how many instances may run at once (default: the number of CPUs).
        max_usd: budget (a finite number >= 0); defaults to the recipe's ``budget.max_usd``.
        reporter: receives every event.
        approve: called with each paid instance and its final parameters before it is
            submitted; a returned reason fails it unpaid (see ``motionflow.review.Approval``).

    Raises:
        RecipeError: the recipe is invalid (nothing runs).
        UsageError: ``max_usd`` is NaN, infinite or negative (nothing runs).
        BudgetError: the plan costs more than the budget (nothing runs).
    """
    from motionflow.cache.store import Cache, default_cache_dir
    from motionflow.engine import execute
    from motionflow.money import finite_usd
    from motionflow.plan import make_plan

    if max_usd is not None:
        max_usd = finite_usd(max_usd, "max_usd", "pass a number of dollars, e.g. 12.5, or None")
    cache = Cache(cache_dir or default_cache_dir())
    try:
        planned = make_plan(recipe, cache)
        limit = max_usd if max_usd is not None else recipe.model.budget.max_usd
        return await execute(
            planned, cache, reporter=reporter, jobs=jobs, max_usd=limit, approve=approve
        )
    finally:
        cache.close()


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the package metadata on first use
        from motionflow.version import installed_version

        return installed_version()
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
