"""The gallery's data: cards, runs and the page, shared by ``collect`` and ``history``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Card", "Gallery", "Run", "text"]


@dataclass
class Card:
    """One result video (a variant's take) and what made it.

    Attributes:
        index: position in matrix order (the default sort).
        stage: the output stage that made the video.
        variant: the variant id (its folder under out/).
        label: ``outfit=red, mode=std``.
        matrix: the variant's matrix values, as text.
        take: 1-based take number.
        takes: how many takes the stage has.
        video: the video file, relative to out/<recipe>/, or None when it is missing.
        video_digest: content digest of the video (names its generated poster).
        poster: the poster image, relative to out/<recipe>/.
        reference_digest: content digest of the reference clip the model followed.
        reference: the copy of the reference clip, relative to out/<recipe>/.
        reference_poster: the reference clip's poster, relative to out/<recipe>/.
        prompt: the rendered prompt, if the stage had one.
        settings: model settings (mode, duration, orientation, model, provider...), as text.
        status: ``new`` (made by the last run), ``cached`` (reused), ``missing``, ``unknown``.
        created_at: when the result was made (ISO 8601).
        estimated_usd: the provider price of the result.
        actual_usd: what was charged (0 when simulated).
        job_id: the provider's job id.
        simulated: made by the simulate provider (nothing charged).
        key: the result's cache key (favourites are kept by it).
        run: the id of the run the card belongs to (``current``: what out/ holds now).
        gone: the video was made but is no longer in out/ nor in the cache.
    """

    index: int
    stage: str
    variant: str
    label: str
    matrix: dict[str, str]
    take: int
    takes: int
    video: str | None = None
    video_digest: str | None = None
    poster: str | None = None
    reference_digest: str | None = None
    reference: str | None = None
    reference_poster: str | None = None
    prompt: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    status: str = "missing"
    created_at: str | None = None
    estimated_usd: float | None = None
    actual_usd: float | None = None
    job_id: str | None = None
    simulated: bool = False
    key: str | None = None
    run: str = "current"
    gone: bool = False


@dataclass
class Run:
    """One run as the gallery shows it.

    Attributes:
        id: the record's id (its file name without ``.json``), or ``current``.
        started_at: when the run started (ISO 8601), if known.
        overrides: the ``--var`` values that differ from the recipe's ``vars:``, as text.
        ran: results made by the run.
        reused: results the run took from the cache.
        missing: results the run did not make.
        estimated_usd: the price of what the run made.
        actual_usd: what the run was charged.
        cards: the run's cards (their ``run`` is this id).
    """

    id: str
    started_at: str | None
    overrides: dict[str, str]
    ran: int
    reused: int
    missing: int
    estimated_usd: float
    actual_usd: float
    cards: list[Card] = field(default_factory=list)


@dataclass
class Gallery:
    """Everything the page shows.

    Attributes:
        recipe: the recipe name.
        provider: the recipe's provider.
        axes: matrix axes with their values in matrix order.
        cards: the cards in matrix order.
        sheets: recipe-wide videos (``over: variants`` outputs): (stage, relative path).
        run_started: when the last run started (ISO 8601), if known.
        runs: what out/ holds now, then earlier recorded runs, newest first (empty: only now).
        recipe_path: the recipe as the user named it (for commands the page suggests).
    """

    recipe: str
    provider: str
    axes: dict[str, list[str]]
    cards: list[Card]
    sheets: list[tuple[str, str]] = field(default_factory=list)
    run_started: str | None = None
    runs: list[Run] = field(default_factory=list)
    recipe_path: str = ""


def text(value: Any) -> str:
    """A matrix value or setting as the page shows it (``8`` not ``8.0``, JSON for lists)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
