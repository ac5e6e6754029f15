"""``write_report``: collect the cards, make posters and reference copies, write index.html."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from motionflow.outfile import atomic_write_text
from motionflow.report.collect import Card, Gallery, collect
from motionflow.report.history import Run, load_runs, overrides, record_run
from motionflow.report.media import (
    REPORT_DIR,
    copy_media,
    copy_reference,
    make_poster,
    remove_stale,
)
from motionflow.report.render import render_html

if TYPE_CHECKING:
    from motionflow.recipe.loader import Recipe

__all__ = ["INDEX", "Report", "write_report"]

INDEX = "index.html"
_LAST_RUN = "last-run.json"


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote.

    Attributes:
        path: ``out/<recipe>/index.html``.
        cards: the number of cards (one per variant and take).
        missing: cards whose video is not made yet.
        notes: things the page lacks and why (a reference clip gone from the cache...).
        earlier_runs: earlier runs the page also shows (from ``out/<recipe>/runs/``).
    """

    path: Path
    cards: int
    missing: int
    notes: list[str] = field(default_factory=list)
    earlier_runs: int = 0


def _run_started(out_dir: Path, run_started: float | None) -> float | None:
    """Record the start of a run in ``.report/``, or read the last one recorded."""
    path = out_dir / REPORT_DIR / _LAST_RUN
    if run_started is not None:
        stamp = datetime.fromtimestamp(run_started, UTC).isoformat()
        atomic_write_text(path, json.dumps({"started_at": stamp}) + "\n")
        return run_started
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return datetime.fromisoformat(data["started_at"]).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _same(run: Run, cards: list[Card]) -> bool:
    """The run record shows what out/ holds now (the same results in the same places)."""

    def shape(of: list[Card]) -> list[tuple[str, str, int, str | None]]:
        return [(c.stage, c.variant, c.take, c.video_digest) for c in of]

    return shape(run.cards) == shape(cards)


def _runs(recipe: Recipe, gallery: Gallery, recorded: list[Run]) -> list[Run]:
    """What out/ holds now first (merged with the newest record when they agree), then history."""
    made = [c for c in gallery.cards if c.status == "new"]
    current = Run(
        id="current",
        started_at=gallery.run_started,
        overrides=overrides(recipe),
        ran=len(made),
        reused=sum(1 for c in gallery.cards if c.status in {"cached", "unknown"}),
        missing=sum(1 for c in gallery.cards if c.status == "missing"),
        estimated_usd=sum(c.estimated_usd or 0.0 for c in made),
        actual_usd=sum(c.actual_usd or 0.0 for c in made),
        cards=gallery.cards,
    )
    if recorded and _same(recorded[0], gallery.cards):
        newest = recorded.pop(0)
        current.id, current.started_at, current.overrides = (
            newest.id,
            newest.started_at,
            newest.overrides,
        )
    for card in gallery.cards:
        card.run = current.id
    return [current, *recorded]


def _earlier_media(runs: list[Run], out_dir: Path, cache_root: Path) -> None:
    """Point the cards of earlier runs at their videos: in out/ now, else copied from the cache."""
    from motionflow.cache.store import Cache

    cache = Cache(cache_root)
    now = {c.video_digest: c for c in runs[0].cards if c.video and c.video_digest}
    for run in runs[1:]:
        for card in run.cards:
            if card.video_digest in now:
                same = now[card.video_digest]
                card.video, card.poster = same.video, same.poster
            elif card.video_digest:
                src = cache.blob_path(card.video_digest)
                card.video = copy_media(out_dir, src, card.video_digest)
            card.gone = card.video is None and card.status != "missing"


async def _media(cards: list[Card], out_dir: Path, cache_root: Path) -> None:
    """Copy each reference clip and make each missing poster once, however many cards share it."""
    from motionflow.cache.store import Cache

    cache = Cache(cache_root)
    refs: dict[str, str | None] = {}
    for digest in sorted({c.reference_digest for c in cards if c.reference_digest}):
        src = cache.blob_path(digest)
        refs[digest] = await asyncio.to_thread(copy_reference, out_dir, src, digest)
    wanted: dict[str, str] = {}
    for card in cards:
        if card.reference_digest:
            card.reference = refs[card.reference_digest]
            if card.reference:
                wanted[card.reference_digest] = card.reference
        if card.video and card.video_digest and not card.poster:
            wanted[card.video_digest] = card.video
    limit = asyncio.Semaphore(max(1, os.cpu_count() or 1))
    digests = sorted(wanted)
    made = await asyncio.gather(*(make_poster(out_dir, wanted[d], d, limit) for d in digests))
    posters = dict(zip(digests, made, strict=True))
    for card in cards:
        if card.video and card.video_digest and not card.poster:
            card.poster = posters[card.video_digest]
        if card.reference and card.reference_digest:
            card.reference_poster = posters[card.reference_digest]


async def write_report(
    recipe: Recipe, cache_root: Path, *, run_started: float | None = None
) -> Report:
    """Write ``out/<recipe>/index.html``: a self-contained, offline gallery of the results.

    One card per variant and take of the recipe's generation outputs, with the video, its
    poster frame (the recipe's ``video.thumbnail`` output of that video, else a JPEG made into
    ``out/<recipe>/.report/``), the reference clip (copied from the cache), the rendered prompt,
    matrix values, model settings, costs and job id. After a run (``run_started`` given) a
    record of it is written to ``out/<recipe>/runs/``; the page also shows the newest recorded
    runs, their videos found by content digest (in out/, else copied from the cache). The page
    only links files under ``out/<recipe>/`` by relative paths, so the folder can be moved,
    zipped, or opened from disk.

    Args:
        recipe: the loaded recipe.
        cache_root: the cache directory (reference clips are copied from it).
        run_started: when the run that just finished started (seconds since the epoch):
            results made since are marked ``new``. None reuses the last run recorded.

    Returns:
        What was written.

    Raises:
        MediaError: ffmpeg could not make a poster frame.
        ToolNotFoundError: no ffmpeg.
        UsageError: ``out/<recipe>/`` is not writable (read-only, full disk).
    """
    try:
        return await _write_report(recipe, cache_root, run_started)
    except OSError as exc:
        from motionflow.outfile import out_write_error

        raise out_write_error(recipe.out_dir, exc, "the report (index.html)") from exc


async def _write_report(recipe: Recipe, cache_root: Path, run_started: float | None) -> Report:
    out_dir = recipe.out_dir
    started = await asyncio.to_thread(_run_started, out_dir, run_started)
    gallery = await asyncio.to_thread(collect, recipe, started)
    if run_started is not None:  # a run just ended: keep a record of it (runs/<id>.json)
        await asyncio.to_thread(record_run, recipe, gallery, run_started)
    recorded, history_notes = await asyncio.to_thread(load_runs, out_dir)
    runs = _runs(recipe, gallery, recorded)
    await asyncio.to_thread(_earlier_media, runs, out_dir, cache_root)
    gallery.runs = runs
    gallery.cards = [card for run in runs for card in run.cards]
    for position, card in enumerate(gallery.cards):
        card.index = position
    await _media(gallery.cards, out_dir, cache_root)
    gone = sorted(
        {c.reference_digest for c in gallery.cards if c.reference_digest and not c.reference}
    )
    notes = [
        f"reference clip {digest} is no longer in the cache {str(cache_root)!r}; its cards show"
        " no reference (run the recipe again to make it)"
        for digest in gone
    ]
    notes.extend(history_notes)
    used = {
        rel
        for c in gallery.cards
        for rel in (c.video, c.poster, c.reference, c.reference_poster)
        if rel and rel.startswith(f"{REPORT_DIR}/")
    }
    await asyncio.to_thread(remove_stale, out_dir, used)
    html = render_html(gallery)
    index = out_dir / INDEX
    try:
        current = index.read_text(encoding="utf-8")
    except OSError:
        current = None
    if current != html:  # an unchanged page is not rewritten
        await asyncio.to_thread(atomic_write_text, index, html)
    now = runs[0].cards
    missing = sum(1 for c in now if not c.video)
    return Report(index, len(now), missing, notes, len(runs) - 1)
