"""Dollar amounts: the one check every amount passes where it enters (flag, file, recipe, plan).

A NaN compares false with everything, so ``cost > budget`` is never true and a NaN budget
would let any plan through; an infinite budget is no budget; a negative price would make a
generation look free. So every amount that comes from outside (``--max-usd``, a price table,
``budget.max_usd``, a plan file, a cache record) goes through :func:`finite_usd` before it is
compared with anything.
"""

from __future__ import annotations

import math

from motionflow.errors import UsageError

__all__ = ["finite_usd", "usd_problem"]


def usd_problem(value: object) -> str | None:
    """Why ``value`` is not an amount of dollars (a finite number >= 0), or None if it is.

    ``True`` is not 1 dollar, and ``"0.14"`` is text, not a number: both are refused.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{value!r} is not a number"
    try:
        number = float(value)
    except OverflowError:
        return f"{value!r} is too large"
    if math.isnan(number):
        return "NaN is not a number of dollars"
    if math.isinf(number):
        return f"{number} is not a finite number of dollars"
    if number < 0:
        return f"{value!r} is negative"
    return None


def finite_usd(value: object, what: str, fix: str = "") -> float:
    """``value`` as dollars, if it is a finite number >= 0.

    Args:
        value: the amount as read (a flag's value, a JSON or YAML number).
        what: the item, for the message: ``--max-usd``, ``"budget.max_usd in hero.yaml"``.
        fix: what the user should do, e.g. ``"pass --max-usd 12.50"``.

    Raises:
        UsageError: ``value`` is NaN, infinite, negative or not a number.
    """
    problem = usd_problem(value)
    if problem is None and isinstance(value, int | float):
        return float(value)
    msg = f"{what}: {problem}; an amount of dollars is a finite number >= 0"
    if fix:
        msg += f". {fix}"
    raise UsageError(msg)
