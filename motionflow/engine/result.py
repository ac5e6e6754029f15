"""What a run did: counts, money, outputs and failures (``motionflow run --json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunResult"]


@dataclass
class RunResult:
    """What a run did; ``motionflow run --json`` prints it.

    Attributes:
        executed: instances that ran.
        cached: instances reused from the cache.
        failed: instances that failed.
        blocked: instances skipped because something they need failed or the budget ran out.
        jobs_submitted: generation jobs submitted (simulated ones included).
        jobs_resumed: jobs picked up from an earlier, interrupted run.
        estimated_usd: the provider price of what ran.
        spent_usd: dollars actually charged (0 with the simulate provider).
        saved_usd: the price of what was reused instead of paid again.
        outputs: files under out/ for the recipe's outputs.
        failures: ``(instance label, message)`` for each failure.
        failed_on_input: failures caused by the user's inputs or parameters (unreadable or
            rule-breaking media, a value no stage accepts), not by a stage or the service.
        budget_refused: the budget stopped at least one instance.
        jobs_collected: paid jobs of earlier runs (any recipe, any vars) fetched by this run.
        jobs_pending: for each paid job still in flight after the run, why and what to do.
        jobs_in_doubt: submits of this run whose fate is unknown (maybe charged).
        remote: what went to and came from the team's remote cache (``url``, ``pulled``,
            ``pulled_bytes``, ``pushed``, ``pushed_bytes``, ``problems``), None without one.
    """

    executed: int = 0
    cached: int = 0
    failed: int = 0
    failed_on_input: int = 0
    blocked: int = 0
    jobs_submitted: int = 0
    jobs_resumed: int = 0
    estimated_usd: float = 0.0
    spent_usd: float = 0.0
    saved_usd: float = 0.0
    outputs: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    budget_refused: bool = False
    jobs_collected: int = 0
    jobs_pending: list[str] = field(default_factory=list)
    jobs_in_doubt: int = 0
    remote: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        """0 ok, 1 a stage failed, 2 only bad inputs failed, 3 the budget stopped something.

        Bad input is exit 2 whether the planner or the run finds it (a downloaded SVG, a
        corrupt clip); a failure of a stage or the service (which a retry may fix) is exit 1.
        """
        if self.failed:
            return 2 if self.failed_on_input == self.failed else 1
        return 3 if self.budget_refused else 0

    def to_json(self) -> dict[str, Any]:
        """The machine-readable summary."""
        return {
            "executed": self.executed,
            "cached": self.cached,
            "failed": self.failed,
            "failed_on_input": self.failed_on_input,
            "blocked": self.blocked,
            "jobs_submitted": self.jobs_submitted,
            "jobs_resumed": self.jobs_resumed,
            "jobs_collected": self.jobs_collected,
            "jobs_pending": self.jobs_pending,
            "jobs_in_doubt": self.jobs_in_doubt,
            "estimated_usd": round(self.estimated_usd, 2),
            "spent_usd": round(self.spent_usd, 2),
            "saved_usd": round(self.saved_usd, 2),
            "outputs": self.outputs,
            "failures": [{"instance": i, "error": e} for i, e in self.failures],
            "exit_code": self.exit_code,
            **({"remote": self.remote} if self.remote is not None else {}),
        }
