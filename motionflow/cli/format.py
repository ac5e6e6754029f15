"""How the commands format for people: the console, amounts of money, ages, sizes, the budget."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from motionflow.budget import BudgetCheck

__all__ = ["age", "clip", "format_size", "make_console", "money", "print_budget"]


def make_console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr) that wraps long lines and highlights nothing."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def money(value: float, exact: bool = True) -> str:
    """``$1,234.50``; an estimate that is only an upper bound reads ``≤$1,234.50``."""
    return ("" if exact else "≤") + f"${value:,.2f}"


def age(seconds: float) -> str:
    """``45s``, ``12m``, ``5h``, ``3d``: how long ago, to the nearest unit."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def format_size(n: float) -> str:
    """``512 B``, ``1.5 KB``, ``3.2 GB``: a number of bytes for people."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover - the loop always returns


def clip(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_budget(check: BudgetCheck, provider: str, console: Console) -> None:
    """One line: the budget, where it comes from, and how the plan's cost fits in it."""
    cost = money(check.estimated_usd, check.exact)
    if check.max_usd is None:
        ask = " run asks before spending real money." if provider == "empiriolabs" else ""
        console.print(
            f"Budget: none (pass --max-usd or set budget: {{max_usd: ...}} in the recipe).{ask}"
        )
    elif check.over:
        console.print(
            f"Budget: {money(check.max_usd)} ({check.source}); the plan costs {cost}: "
            "[red]over the budget[/]."
        )
    elif check.may_exceed:
        console.print(
            f"[yellow]Budget[/]: {money(check.max_usd)} ({check.source}); the plan costs "
            f"{cost}, which may pass it: run reserves each generation's price before "
            "submitting it and skips those past the budget (exit 3)."
        )
    else:
        console.print(
            f"Budget: {money(check.max_usd)} ({check.source}); the plan costs {cost}, "
            f"within it ({money(check.max_usd - check.estimated_usd)} left)."
        )
