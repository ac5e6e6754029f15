"""Render a :class:`Gallery` to one self-contained HTML page (autoescaped Jinja2)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from motionflow.report.assets import CSS, JS, TEMPLATE
from motionflow.report.collect import Gallery
from motionflow.report.history import Run

__all__ = ["render_html", "run_label", "script_json"]

_STATUS = {"new": "new", "cached": "cached", "missing": "missing", "unknown": "made earlier"}


def script_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``</``, ``<!--`` or ``]]>``.

    ``<``, ``>`` and ``&`` only occur inside JSON strings, where their ``\\u`` escapes mean the
    same characters to ``JSON.parse``.
    """
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _url(rel: str) -> str:
    """A relative URL for a path under out/<recipe>/ (never absolute, never a scheme)."""
    return quote(rel.replace("\\", "/"), safe="/")


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(JS.encode("utf-8")).digest()).decode("ascii")
    # Only our own script runs (by hash), nothing is fetched from the network.
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'sha256-{digest}'",
            "style-src 'unsafe-inline'",
            "img-src 'self' file:",
            "media-src 'self' file:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def run_label(run: Run, *, latest: bool) -> str:
    """``2026-11-26 02:53 UTC · --var mode=pro · 4 ran, 16 reused · $1.92``."""
    when = "not recorded"
    if run.started_at:
        try:
            moment = datetime.fromisoformat(run.started_at).astimezone(UTC)
            when = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
        except ValueError:
            when = run.started_at
    parts = [f"{when} (latest)" if latest else when]
    parts.append(" ".join(f"--var {k}={v}" for k, v in run.overrides.items()) or "recipe vars")
    parts.append(f"{run.ran} ran, {run.reused} reused")
    if run.missing:
        parts.append(f"{run.missing} missing")
    parts.append(f"{_money(run.estimated_usd)} estimated")
    return " · ".join(parts)


def render_html(gallery: Gallery) -> str:
    """The page: cards, filters, sort, grid, run history, favourites, compare; all escaped."""
    env = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
    runs = gallery.runs or [
        Run("current", gallery.run_started, {}, 0, 0, 0, 0.0, 0.0, list(gallery.cards))
    ]
    cards = [c for c in gallery.cards if c.run == runs[0].id] or gallery.cards
    made = [c for c in cards if c.video]
    counts = {s: sum(1 for c in cards if c.status == s) for s in ("new", "cached", "missing")}
    totals = {
        "estimated": sum(c.estimated_usd or 0.0 for c in made),
        "new": sum(c.estimated_usd or 0.0 for c in made if c.status == "new"),
        "actual": sum(c.actual_usd or 0.0 for c in made),
    }
    data = {
        "recipe": gallery.recipe,
        "recipe_path": gallery.recipe_path or f"{gallery.recipe}.yaml",
        "runs": [
            {
                "id": r.id,
                "label": run_label(r, latest=i == 0),
                "overrides": r.overrides,
                "started_at": r.started_at,
            }
            for i, r in enumerate(runs)
        ],
        "axes": gallery.axes,
        "cards": [
            {
                **{k: v for k, v in asdict(c).items() if k not in {"settings", "prompt"}},
                **{
                    k: _url(v) if v else None
                    for k, v in (
                        ("video", c.video),
                        ("poster", c.poster),
                        ("reference", c.reference),
                        ("reference_poster", c.reference_poster),
                    )
                },
            }
            for c in gallery.cards
        ],
    }
    template = env.from_string(TEMPLATE)
    return template.render(
        g=gallery,
        runs=[(r.id, run_label(r, latest=i == 0)) for i, r in enumerate(runs)],
        current=runs[0].id,
        shown=len(cards),
        counts=counts,
        totals=totals,
        simulated=gallery.provider == "simulate",
        status_text=_STATUS,
        money=_money,
        url=_url,
        csp=_csp(),
        css=Markup(CSS),  # noqa: S704 - our own constant, not user text
        js=Markup(JS),  # noqa: S704 - our own constant; its hash is in the CSP
        data=Markup(script_json(data)),  # noqa: S704 - escaped by script_json
    )
