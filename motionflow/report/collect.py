"""What the gallery shows: one card per variant and take, read from the manifest and receipts."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motionflow.manifest import Manifest
from motionflow.report.cards import Card, Gallery, text

if TYPE_CHECKING:
    from motionflow.recipe.loader import Recipe

__all__ = ["VIDEO_EXTS", "Card", "Gallery", "collect", "text"]

VIDEO_EXTS = (".mp4", ".webm", ".mov", ".m4v")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
_GENERATION = "kling.motion_control"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _suffix(rel: str) -> str:
    """``Path(rel).suffix.lower()`` without building a Path (every entry of a big sweep)."""
    name = rel.rpartition("/")[2]
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def _files(entry: dict[str, Any], exts: tuple[str, ...]) -> str | None:
    return next(
        (rel for rel in sorted(entry.get("files", {})) if _suffix(rel) in exts),
        None,
    )


def _receipt(out_dir: Path, entry: dict[str, Any]) -> dict[str, Any]:
    rel = next((r for r in entry.get("files", {}) if r.endswith(".receipt.json")), None)
    return _read_json(out_dir / rel) if rel else {}


def _entries(manifest: Manifest, stage: str, variant: str) -> list[tuple[int, dict[str, Any]]]:
    """The manifest entries of ``stage`` for ``variant``, with their take numbers, in order."""
    found: list[tuple[int, dict[str, Any]]] = []
    for name, entry in manifest.entries.items():
        if name == f"{stage}/{variant}":
            found.append((1, entry))
        elif name.startswith(f"{stage}/{variant}/take-"):
            tail = name.rsplit("-", 1)[-1]
            found.append((int(tail) if tail.isdigit() else 1, entry))
    return sorted(found, key=lambda pair: pair[0])


def _money(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _status(created_at: str | None, run_started: float | None) -> str:
    if run_started is None or not created_at:
        return "unknown"
    try:
        made = datetime.fromisoformat(created_at).timestamp()
    except ValueError:
        return "unknown"
    if "." not in created_at:  # stamped to the second (before motionflow 0.1.0's release)
        return "new" if made >= math.floor(run_started) else "cached"
    return "new" if made >= run_started - 0.001 else "cached"


def _settings(receipt: dict[str, Any]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for name, value in sorted(receipt.get("parameters", {}).items()):
        if name == "prompt" or (isinstance(value, dict) and "$file" in value):
            continue
        settings[name] = text(value)
    generation = receipt.get("generation", {})
    for name in ("model", "provider"):
        value = generation.get(name) or receipt.get("environment", {}).get(name)
        if value:
            settings[name] = text(value)
    return settings


def _fill(card: Card, out_dir: Path, entry: dict[str, Any], run_started: float | None) -> None:
    receipt = _receipt(out_dir, entry)
    key = receipt.get("key") or entry.get("key")
    card.key = key if isinstance(key, str) else None
    video = _files(entry, VIDEO_EXTS)
    if video is None or not (out_dir / video).is_file():
        return
    card.video = video
    for out in receipt.get("outputs", {}).values():
        if isinstance(out, dict) and str(out.get("ext", "")).lower() in VIDEO_EXTS:
            card.video_digest = out.get("file")
            break
    generation = receipt.get("generation", {})
    params = receipt.get("parameters", {})
    prompt = generation.get("rendered_prompt", params.get("prompt"))
    card.prompt = prompt if isinstance(prompt, str) else None
    card.settings = _settings(receipt)
    inputs = receipt.get("inputs", {})
    if receipt.get("kind") == _GENERATION or "reference" in inputs:
        card.reference_digest = inputs.get("video") or inputs.get("reference")
    card.created_at = receipt.get("created_at")
    card.status = _status(card.created_at, run_started)
    card.estimated_usd = _money(generation.get("estimated_usd"))
    card.actual_usd = _money(generation.get("actual_usd"))
    card.job_id = generation.get("job_id")
    card.simulated = bool(generation.get("simulated"))


def _card_stages(recipe: Recipe, manifest: Manifest) -> list[str]:
    stages = recipe.model.stages
    per_variant = [s for s in recipe.model.outputs if s in stages and stages[s].over is None]
    generations = [s for s in per_variant if stages[s].uses == _GENERATION]
    if generations:
        return generations
    return [
        s
        for s in per_variant
        if any(n.startswith(f"{s}/") and _files(e, VIDEO_EXTS) for n, e in manifest.entries.items())
    ]


def _thumbnails(recipe: Recipe, manifest: Manifest) -> dict[str, str]:
    """Digest of a video -> the ``video.thumbnail`` output image of it."""
    stages = recipe.model.stages
    thumbs: dict[str, str] = {}
    for stage in recipe.model.outputs:
        if stage not in stages or stages[stage].uses != "video.thumbnail":
            continue
        for name, entry in manifest.entries.items():
            image = _files(entry, _IMAGE_EXTS)
            if not name.startswith(f"{stage}/") or image is None:
                continue
            src = _receipt(recipe.out_dir, entry).get("inputs", {}).get("src")
            if src and (recipe.out_dir / image).is_file():
                thumbs.setdefault(src, image)
    return thumbs


def collect(recipe: Recipe, run_started: float | None) -> Gallery:
    """Read what the last runs wrote under ``out/<recipe>/`` into cards, in matrix order.

    Args:
        recipe: the loaded recipe (its outputs, stages and variants choose the cards).
        run_started: when the last run started (seconds since the epoch): results made since
            are ``new``, older ones ``cached``; None marks them ``unknown``.

    Returns:
        The gallery; variants or takes not made yet are ``missing`` cards.
    """
    out_dir = recipe.out_dir
    manifest = Manifest.load(out_dir)
    axes: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()  # a list's `in` was quadratic in an axis's length
    for variant in recipe.variants:
        for axis, value in variant.values:
            values = axes.setdefault(axis, [])
            shown = text(value)
            if (axis, shown) not in seen:
                seen.add((axis, shown))
                values.append(shown)
    stages = recipe.model.stages
    thumbs = _thumbnails(recipe, manifest)
    cards: list[Card] = []
    for stage in _card_stages(recipe, manifest):
        for variant in recipe.variants:
            found = _entries(manifest, stage, variant.id)
            takes = max(stages[stage].takes, len(found))
            by_take = dict(found)
            for take in range(1, takes + 1):
                card = Card(
                    index=len(cards),
                    stage=stage,
                    variant=variant.id,
                    label=variant.label,
                    matrix={axis: text(value) for axis, value in variant.values},
                    take=take,
                    takes=takes,
                )
                if take in by_take:
                    _fill(card, out_dir, by_take[take], run_started)
                if card.video_digest:
                    card.poster = thumbs.get(card.video_digest)
                cards.append(card)
    sheets: list[tuple[str, str]] = []
    for stage in recipe.model.outputs:
        if stage in stages and stages[stage].over == "variants":
            entry = manifest.entries.get(f"{stage}/", {})
            video = _files(entry, VIDEO_EXTS)
            if video and (out_dir / video).is_file():
                sheets.append((stage, video))
    started = (
        datetime.fromtimestamp(run_started).astimezone().isoformat(timespec="seconds")
        if run_started is not None
        else None
    )
    return Gallery(
        recipe=recipe.name,
        provider=recipe.model.provider,
        axes=axes,
        cards=cards,
        sheets=sheets,
        run_started=started,
        recipe_path=recipe.display,
    )
