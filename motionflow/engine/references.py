"""What projects and stage kinds say about cached results: references, receipts, import rules.

The cache package knows records and blobs, not the ``out/*/manifest.json`` files runs write
nor the stage registry; the functions here read those and hand the cache what it needs
(``cache gc``, ``cache ls``, ``cache export``, ``cache import`` call these).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from motionflow.cache.archive import StageKindShape
from motionflow.cache.export import ExportReport
from motionflow.cache.export import export_results as _export
from motionflow.cache.manage import pinned_keys
from motionflow.cache.store import Cache
from motionflow.cache.transfer import ImportReport
from motionflow.cache.transfer import import_results as _import
from motionflow.errors import CacheError, UsageError
from motionflow.manifest import MANIFEST, Manifest
from motionflow.stages.registry import get_stage, known_kinds

__all__ = [
    "export_results",
    "import_results",
    "receipt_of",
    "recipe_keys",
    "referenced_keys",
    "stage_kind",
]


def referenced_keys(cache: Cache, projects: Iterable[Path]) -> set[str]:
    """Keys named by ``out/*/manifest.json`` of ``projects`` and by ``<cache>/roots.json``.

    Raises:
        CacheError: a manifest is damaged (it may be what keeps a paid result: never guess),
            or ``roots.json`` cannot be read.
    """
    keys: set[str] = set()
    for project in projects:
        for manifest in sorted((project / "out").glob(f"*/{MANIFEST}")):
            loaded = Manifest.load(manifest.parent)
            if loaded.damaged:
                raise CacheError(_damaged_manifest(manifest, loaded.damaged))
            for entry in loaded.entries.values():
                keys.add(entry["key"])
    return keys | pinned_keys(cache)


def _damaged_manifest(path: Path, why: str) -> str:
    return (
        f"the manifest {str(path)!r} is damaged ({why}), so which results its project uses "
        "is unknown; nothing was changed. Rebuild it with `motionflow run RECIPE --recheck` "
        "(free: the results are in the cache), or move it aside if the recipe is gone"
    )


def recipe_keys(projects: Iterable[Path], name: str) -> list[str]:
    """The keys in ``out/<name>/manifest.json`` of the first project that has one.

    Raises:
        UsageError: no scanned project has run a recipe of that name.
        CacheError: that manifest is damaged.
    """
    searched = []
    for project in projects:
        out = project / "out" / name
        searched.append(str(out / MANIFEST))
        if (out / MANIFEST).is_file():
            loaded = Manifest.load(out)
            if loaded.damaged:
                raise CacheError(_damaged_manifest(out / MANIFEST, loaded.damaged))
            return sorted({e["key"] for e in loaded.entries.values()})
    msg = (
        f"no results recorded for recipe {name!r}: {', '.join(searched) or 'no project'} does "
        "not exist. Run the recipe first, or pass --project DIR for the project that ran it"
    )
    raise UsageError(msg)


def receipt_of(projects: Iterable[Path], key: str) -> Any:
    """The receipt a run of ``projects`` wrote beside ``key``'s output (parsed), or None."""
    written = None
    for project in projects:
        for manifest in sorted((project / "out").glob(f"*/{MANIFEST}")):
            for entry in Manifest.load(manifest.parent).entries.values():
                if entry.get("key") != key:
                    continue
                for rel in entry.get("files", {}):
                    if rel.endswith(".receipt.json"):
                        with contextlib.suppress(OSError, ValueError):
                            written = json.loads(
                                (manifest.parent / rel).read_text(encoding="utf-8")
                            )
                            break
    return written


def stage_kind(name: str) -> StageKindShape | None:
    """The registered stage kind ``name``, or None when this installation has none."""
    return get_stage(name) if name in known_kinds() else None


def export_results(cache: Cache, dest: Path, keys: list[str], projects: list[Path]) -> ExportReport:
    """Export ``keys`` with the receipts ``projects`` wrote (see ``cache.export``).

    Raises:
        UsageError: nothing exportable, or ``dest`` cannot be written.
    """
    roots = list(projects)
    return _export(cache, dest, keys, lambda key: receipt_of(roots, key))


def import_results(cache: Cache, src: Path) -> ImportReport:
    """Import an export, checking its records against the registered stage kinds.

    Raises:
        UsageError: the archive is missing, unreadable, malformed or tampered with.
        CacheError: the cache cannot take it (disk full, read-only).
    """
    return _import(cache, src, stage_kind)
