"""The gallery's run history: one small JSON per run in ``out/<recipe>/runs/``, read as cards."""

from __future__ import annotations

import json
import math
import re
import secrets
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motionflow.outfile import atomic_write_text
from motionflow.report.cards import Card, Gallery, Run, text

if TYPE_CHECKING:
    from motionflow.recipe.loader import Recipe

__all__ = ["FORMAT", "MAX_RUNS", "RUNS_DIR", "Run", "load_runs", "overrides", "record_run"]

RUNS_DIR = "runs"
"""The history folder under ``out/<recipe>/``."""

FORMAT = 1
"""The version of a run record; records of another version are skipped, with a note."""

MAX_RUNS = 30
"""The gallery shows at most this many recorded runs (the newest); older records stay on disk."""

_DIGEST = re.compile(r"blake3:[0-9a-f]{64}")
# What a record keeps of a card: never a path (paths are found again from digests).
_KEPT = (
    "stage",
    "variant",
    "label",
    "matrix",
    "take",
    "takes",
    "key",
    "video_digest",
    "reference_digest",
    "prompt",
    "settings",
    "status",
    "created_at",
    "estimated_usd",
    "actual_usd",
    "job_id",
    "simulated",
)


def overrides(recipe: Recipe) -> dict[str, str]:
    """The effective ``vars`` that differ from the recipe file's ``vars:`` (the ``--var``s)."""
    base = recipe.model.vars
    return {
        str(name): text(value)
        for name, value in sorted(recipe.vars.items())
        if name not in base or base[name] != value
    }


def _totals(cards: list[Card]) -> dict[str, Any]:
    made = [c for c in cards if c.status == "new"]
    return {
        "ran": len(made),
        "reused": sum(1 for c in cards if c.status in {"cached", "unknown"}),
        "missing": sum(1 for c in cards if c.status == "missing"),
        "estimated_usd": round(sum(c.estimated_usd or 0.0 for c in made), 4),
        "actual_usd": round(sum(c.actual_usd or 0.0 for c in made), 4),
    }


def record_run(recipe: Recipe, gallery: Gallery, started: float) -> Path:
    """Write ``runs/<id>.json``: when the run started, its vars, what it made and reused.

    Written to a temporary file and renamed, so a record is whole or absent.

    Returns:
        The record's path.
    """
    moment = datetime.fromtimestamp(started, UTC)
    run_id = f"{moment.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    record = {
        "format": FORMAT,
        "id": run_id,
        "recipe": recipe.name,
        "started_at": moment.isoformat(timespec="milliseconds"),
        "overrides": overrides(recipe),
        **_totals(gallery.cards),
        "results": [{k: v for k, v in asdict(c).items() if k in _KEPT} for c in gallery.cards],
    }
    path = recipe.out_dir / RUNS_DIR / f"{run_id}.json"
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _usd(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _card(raw: Any, run_id: str) -> Card | None:
    """A card from a record's result; None when it is not one (a hand-edited record)."""
    if not isinstance(raw, dict):
        return None
    take, takes = raw.get("take"), raw.get("takes")
    matrix, settings = raw.get("matrix"), raw.get("settings")
    if not (isinstance(take, int) and isinstance(takes, int) and isinstance(matrix, dict)):
        return None
    digest = _str(raw.get("video_digest"))
    reference = _str(raw.get("reference_digest"))
    status = _str(raw.get("status"))
    return Card(
        index=0,
        stage=_str(raw.get("stage")) or "",
        variant=_str(raw.get("variant")) or "",
        label=_str(raw.get("label")) or "",
        matrix={str(k): text(v) for k, v in matrix.items()},
        take=take,
        takes=takes,
        key=_str(raw.get("key")),
        video_digest=digest if digest and _DIGEST.fullmatch(digest) else None,
        reference_digest=reference if reference and _DIGEST.fullmatch(reference) else None,
        prompt=_str(raw.get("prompt")),
        settings=(
            {str(k): text(v) for k, v in settings.items()} if isinstance(settings, dict) else {}
        ),
        status=status if status in {"new", "cached", "missing", "unknown"} else "unknown",
        created_at=_str(raw.get("created_at")),
        estimated_usd=_usd(raw.get("estimated_usd")),
        actual_usd=_usd(raw.get("actual_usd")),
        job_id=_str(raw.get("job_id")),
        simulated=raw.get("simulated") is True,
        run=run_id,
    )


def _run(data: dict[str, Any], run_id: str) -> Run:
    cards = [c for raw in data.get("results", []) if (c := _card(raw, run_id)) is not None]
    raw_overrides = data.get("overrides")
    counts = {
        name: value if isinstance(value := data.get(name), int) else 0
        for name in ("ran", "reused", "missing")
    }
    return Run(
        id=run_id,
        started_at=_str(data.get("started_at")),
        overrides=(
            {str(k): text(v) for k, v in raw_overrides.items()}
            if isinstance(raw_overrides, dict)
            else {}
        ),
        estimated_usd=_usd(data.get("estimated_usd")) or 0.0,
        actual_usd=_usd(data.get("actual_usd")) or 0.0,
        cards=cards,
        **counts,
    )


def load_runs(out_dir: Path, limit: int = MAX_RUNS) -> tuple[list[Run], list[str]]:
    """Read the newest ``limit`` run records, newest first.

    Returns:
        The runs, and notes on records that could not be read (they are skipped).
    """
    folder = out_dir / RUNS_DIR
    notes: list[str] = []
    try:
        paths = sorted((p for p in folder.iterdir() if p.suffix == ".json"), reverse=True)
    except OSError:
        return [], notes
    runs: list[Run] = []
    for path in paths[:limit]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            notes.append(f"run record {str(path)!r} could not be read ({exc}); it is not shown")
            continue
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            notes.append(
                f"run record {str(path)!r} is not a format-{FORMAT} run record; it is not shown"
            )
            continue
        runs.append(_run(data, path.stem))
    return runs, notes
