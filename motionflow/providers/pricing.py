"""The price table (configuration, with its date) and the billable-seconds rule."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from motionflow.errors import UsageError
from motionflow.infile import UnreadableError, read_bounded
from motionflow.money import finite_usd

__all__ = ["PriceTable", "billable_seconds", "price_table"]

_DEFAULT = Path(__file__).with_name("prices.json")
MAX_PRICES_BYTES = 64 << 10
"""A price table is a few lines of JSON: a larger file (or ``/dev/zero``) is refused unread."""


@dataclass(frozen=True)
class PriceTable:
    """Dollars per second of output by mode, and the date the prices were read."""

    model: str
    as_of: str
    per_second: dict[str, float]

    def usd(self, mode: str, seconds: float) -> float:
        """Price of ``seconds`` of output in ``mode``, rounded to cents."""
        return round(self.per_second[mode] * seconds, 2)


@cache
def price_table() -> PriceTable:
    """Load the price table from ``MOTIONFLOW_PRICES`` (a JSON file) or the packaged default.

    Raises:
        UsageError: the file named by ``MOTIONFLOW_PRICES`` is missing or malformed.
    """
    path = Path(os.environ.get("MOTIONFLOW_PRICES") or _DEFAULT)
    shape = (
        'It must be JSON like {"model": ..., "as_of": "YYYY-MM-DD", '
        '"per_second": {"std": 0.14, "pro": 0.18}}; fix the file or unset MOTIONFLOW_PRICES'
    )
    try:
        raw = json.loads(read_bounded(path, MAX_PRICES_BYTES).decode("utf-8"))
        prices = raw["per_second"].items()
        table = PriceTable(
            model=str(raw["model"]),
            as_of=str(raw["as_of"]),
            # JSON allows NaN and Infinity, and "0.14" is text: each price is checked
            per_second={
                str(mode): finite_usd(
                    price, f"the price table {str(path)!r}: per_second[{str(mode)!r}]", shape
                )
                for mode, price in prices
            },
        )
    except UnreadableError as exc:
        msg = f"cannot read the price table {str(path)!r}: {exc.reason}. {shape}"
        raise UsageError(msg) from exc
    except (RecursionError, ValueError, KeyError, TypeError, AttributeError) as exc:
        msg = f"cannot read the price table {str(path)!r}: {exc}. {shape}"
        raise UsageError(msg) from exc
    missing = {"std", "pro"} - set(table.per_second)
    if missing:
        msg = f"the price table {str(path)!r} has no price for {sorted(missing)}"
        raise UsageError(msg)
    return table


def billable_seconds(reference_seconds: float | None, duration: float, cap: float) -> float:
    """``min(ceil(reference), duration, cap)``: the conservative estimate of billed seconds.

    With no reference length yet (the clip is made by an earlier stage), the bound
    ``min(duration, cap)`` is returned.
    """
    bound = min(duration, cap)
    if reference_seconds is None:
        return float(math.ceil(bound))
    # round() first: a container that says 4.0000001 s is a 4 s clip, not a 5 s bill.
    return float(min(math.ceil(round(reference_seconds, 3)), math.ceil(bound)))
