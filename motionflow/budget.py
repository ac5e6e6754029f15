"""The budget a plan is held to: where it comes from, and whether the plan fits in it.

``plan``, ``impact`` and ``run`` judge a plan the same way: an exact cost over the budget is
refused (exit 3) before anything runs; an upper bound over it (a clip an earlier stage makes)
only warns, because ``run`` reserves each generation's price before submitting it and skips
those past the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from motionflow.plan import Plan

__all__ = ["BudgetCheck", "check_budget"]

#: Float sums of cents are compared with this slack.
_EPSILON = 1e-9


@dataclass(frozen=True)
class BudgetCheck:
    """A plan against its budget.

    Attributes:
        max_usd: the budget, None when none is stated.
        source: where it comes from: ``--max-usd`` or ``budget.max_usd`` (None without one).
        estimated_usd: what the plan's misses cost (an upper bound unless ``exact``).
        exact: every estimate is exact.
        known_usd: the part of ``estimated_usd`` that is exact.
    """

    max_usd: float | None
    source: str | None
    estimated_usd: float
    exact: bool
    known_usd: float

    @property
    def over(self) -> bool:
        """The exact costs alone pass the budget: ``run`` would refuse to start (exit 3)."""
        return self.max_usd is not None and self.known_usd > self.max_usd + _EPSILON

    @property
    def may_exceed(self) -> bool:
        """Only the upper bound passes the budget: ``run`` starts, and skips what does not fit."""
        return (
            self.max_usd is not None
            and not self.over
            and self.estimated_usd > self.max_usd + _EPSILON
        )

    def refusal(self) -> str:
        """Why ``run`` would refuse this plan, and the fix (only meaningful when ``over``)."""
        return (
            f"the plan costs ${self.known_usd:.2f}, over the budget of ${self.max_usd or 0:.2f} "
            f"({self.source}), so `motionflow run` would refuse it (exit 3); raise --max-usd or "
            "budget.max_usd, or trim the matrix"
        )

    def to_json(self) -> dict[str, Any]:
        """The ``budget`` field of ``plan --json`` and ``impact --json``."""
        return {
            "max_usd": self.max_usd,
            "source": self.source,
            "estimated_usd": self.estimated_usd,
            "estimate_exact": self.exact,
            "over": self.over,
            "may_exceed": self.may_exceed,
        }


def check_budget(plan: Plan, max_usd: float | None = None) -> BudgetCheck:
    """Judge ``plan`` against ``max_usd`` (a flag), else the recipe's ``budget.max_usd``.

    ``max_usd`` must already be a checked amount (:func:`motionflow.money.finite_usd`); the
    recipe's is checked when the recipe is loaded.
    """
    recipe_max = plan.recipe.model.budget.max_usd
    if max_usd is not None:
        limit, source = max_usd, "--max-usd"
    elif recipe_max is not None:
        limit, source = recipe_max, "budget.max_usd"
    else:
        limit, source = None, None
    known = round(sum(p.estimate.usd for p in plan.to_run if p.estimate.exact), 2)
    return BudgetCheck(limit, source, plan.estimated_usd, plan.exact, known)
