"""What an edit would re-run and cost, grouped by cause, before anything runs (``impact``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from motionflow.plan import Plan
from motionflow.why import cause_of

__all__ = ["Impact", "ImpactGroup", "impact"]


@dataclass
class ImpactGroup:
    """The misses that share one reason.

    Attributes:
        reason: the plan's reason (``duration: 3.0 -> 4.0``).
        cause: the reason in words.
        instances: labels of the instances that would re-run.
        generations: how many of them are paid generations.
        usd: what they would cost.
        exact: False when some estimate is an upper bound.
    """

    reason: str
    cause: str
    instances: list[str] = field(default_factory=list)
    generations: int = 0
    usd: float = 0.0
    exact: bool = True

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (``impact --json``)."""
        return {
            "reason": self.reason,
            "cause": self.cause,
            "count": len(self.instances),
            "generations": self.generations,
            "estimated_usd": round(self.usd, 2),
            "estimate_exact": self.exact,
            "instances": self.instances,
        }


@dataclass
class Impact:
    """What an edit would re-run and cost, grouped by cause, before anything runs."""

    recipe: str
    provider: str
    groups: list[ImpactGroup]
    cached: int

    @property
    def count(self) -> int:
        """Instances that would re-run."""
        return sum(len(g.instances) for g in self.groups)

    @property
    def generations(self) -> int:
        """Paid generations among them."""
        return sum(g.generations for g in self.groups)

    @property
    def usd(self) -> float:
        """Their total cost."""
        return round(sum(g.usd for g in self.groups), 2)

    @property
    def exact(self) -> bool:
        """False when some estimate is an upper bound."""
        return all(g.exact for g in self.groups)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (``impact --json``)."""
        return {
            "recipe": self.recipe,
            "provider": self.provider,
            "to_run": self.count,
            "generations": self.generations,
            "cached": self.cached,
            "estimated_usd": self.usd,
            "estimate_exact": self.exact,
            "groups": [g.to_json() for g in self.groups],
        }


def impact(plan: Plan) -> Impact:
    """The plan's misses grouped by reason, dearest group first."""
    groups: dict[str, ImpactGroup] = {}
    for item in plan.to_run:
        cause = cause_of(item.reason)  # "waits for take[a]" and "take[b]" are one cause
        group = groups.setdefault(cause, ImpactGroup(item.reason, cause))
        group.instances.append(item.instance.label)
        group.generations += int(item.instance.impl.paid)
        group.usd += item.estimate.usd
        group.exact = group.exact and item.estimate.exact
    ordered = sorted(groups.values(), key=lambda g: (-g.usd, -len(g.instances), g.reason))
    for group in ordered:
        group.usd = round(group.usd, 2)
    return Impact(plan.recipe.name, plan.recipe.model.provider, ordered, len(plan.cached))
