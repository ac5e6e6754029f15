"""``write_report``: collect the cards, make posters and reference copies, write index.html."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from motionflow.manifest import atomic_write_text
from motionflow.report.collect import Card, collect
from motionflow.report.media import REPORT_DIR, copy_reference, make_poster, remove_stale
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
    """

    path: Path
    cards: int
    missing: int
    notes: list[str] = field(default_factory=list)


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
    matrix values, model settings, costs and job id. The page only links files under
    ``out/<recipe>/`` by relative paths, so the folder can be moved, zipped, or opened from disk.

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
    await _media(gallery.cards, out_dir, cache_root)
    gone = sorted(
        {c.reference_digest for c in gallery.cards if c.reference_digest and not c.reference}
    )
    notes = [
        f"reference clip {digest} is no longer in the cache {str(cache_root)!r}; its cards show"
        " no reference (run the recipe again to make it)"
        for digest in gone
    ]
    used = {
        rel
        for c in gallery.cards
        for rel in (c.poster, c.reference, c.reference_poster)
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
    missing = sum(1 for c in gallery.cards if not c.video)
    return Report(index, len(gallery.cards), missing, notes)
