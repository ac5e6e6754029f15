"""The run stamp: proof that nothing changed since the last clean run, checked without planning.

A clean run (nothing failed or skipped) writes ``<cache>/stamps/<recipe path digest>.json``
recording everything its plan depended on: the recipe's bytes, the ``--var`` flags, the project
root, the environment variables that change keys, and (path, size, mtime_ns) of every local
input, every file a stage declared it depends on (a python stage's module), every written
output, and the identity of the cache index. When all of it is unchanged, ``motionflow run``
reports the no-op without importing the planner at all; anything different, and the full plan
runs. See docs/caching.md ("The no-op fast path") for what is and is not covered.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from motionflow.limits import MAX_RECIPE_BYTES
from motionflow.version import installed_version

if TYPE_CHECKING:
    from motionflow.cache.store import Cache
    from motionflow.engine import RunResult
    from motionflow.plan import Plan

__all__ = ["STAMP_VERSION", "check_stamp", "write_stamp"]

STAMP_VERSION = 1
_ENV = ("MOTIONFLOW_FFMPEG", "MOTIONFLOW_PRICES", "PATH")
_BUILTIN_PREFIXES = ("motionflow.",)


def _stamp_file(cache_root: Path, recipe: Path) -> Path:
    name = blake3.blake3(str(recipe).encode()).hexdigest()[:32]
    return cache_root / "stamps" / f"{name}.json"


def _stat(path: str | Path) -> list[Any] | None:
    try:
        st = os.stat(path)  # noqa: PTH116 - strings: see write_stamp
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _context(
    cache_root: Path,
    recipe: Path,
    raw_vars: list[str],
    allow_outside: bool,
    targets: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    from motionflow.project import find_project_root

    index = _stat(cache_root / "index" / "cache.db")
    return {
        # the index's identity only: its mtime moves whenever any recipe runs
        "index": index[2] if index else None,
        "version": STAMP_VERSION,
        "motionflow": installed_version(),
        "recipe": str(recipe),
        "recipe_digest": blake3.blake3(recipe.read_bytes()).hexdigest(),
        "root": str(find_project_root(recipe.parent)),
        "vars": list(raw_vars),  # in order: a repeated --var takes the last value
        "allow_outside_project": allow_outside,
        # --only/--stage: a targeted run vouches for its selection only, never for a full run
        "targets": targets or {"only": [], "stage": []},
        "env": {k: os.environ.get(k) for k in _ENV},
    }


def check_stamp(
    cache_root: Path,
    recipe: Path,
    raw_vars: list[str],
    allow_outside: bool,
    targets: dict[str, list[str]] | None = None,
) -> dict[str, Any] | None:
    """The stored summary of the last clean run if nothing it depended on changed, else None.

    ``targets`` (``Targets.to_json()``) must be those of that run: a targeted run's stamp
    never answers a full run, nor the other way round.
    """
    try:
        recipe = recipe.resolve()
        info = recipe.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RECIPE_BYTES:
            return None  # a FIFO or a huge file: the full load refuses it with a message
        stamp = json.loads(_stamp_file(cache_root, recipe).read_text(encoding="utf-8"))
        if stamp.get("context") != _context(cache_root, recipe, raw_vars, allow_outside, targets):
            return None
        for path, recorded in stamp["files"].items():
            if _stat(Path(path)) != recorded:
                return None
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, AttributeError):
        return None  # RuntimeError: a symlink loop (Path.resolve, Python < 3.13)
    summary: dict[str, Any] = stamp["summary"]
    return summary


def write_stamp(
    plan: Plan,
    result: RunResult,
    cache: Cache,
    raw_vars: list[str],
    allow_outside: bool,
    targets: dict[str, list[str]] | None = None,
) -> bool:
    """Record a clean run's dependencies; returns False (and writes nothing) when the recipe
    uses something the stamp cannot vouch for (a third-party stage kind)."""
    stamp = _stamp_file(cache.root, plan.recipe.path)
    if result.failed or result.blocked or result.budget_refused:
        stamp.unlink(missing_ok=True)
        return False
    # strings, not Paths: a 100,000-variant sweep records 400,000 files, and building and
    # sorting that many Path objects took longer than stat-ing them
    files: set[str] = set()
    for item in plan.items:
        impl = item.instance.impl
        if not type(impl).__module__.startswith(_BUILTIN_PREFIXES):
            stamp.unlink(missing_ok=True)
            return False
        watch = getattr(impl, "watched_files", None)
        if watch is not None:
            files.update(str(p) for p in watch(item.instance.params))
    for artifact in plan.inputs.values():
        if artifact is not None:
            files.add(str(artifact.path))
    out_dir = str(plan.recipe.out_dir)
    manifest = plan.recipe.out_dir / "manifest.json"
    files.add(str(manifest))
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["entries"]
    except (OSError, ValueError, KeyError):
        return False
    for entry in entries.values():
        for rel in entry.get("files", {}):
            files.add(os.path.join(out_dir, rel))  # noqa: PTH118 - strings, as above
    files.update(result.outputs)
    recorded = {p: _stat(p) for p in sorted(files)}
    summary = {
        **result.to_json(),
        "executed": 0,
        "jobs_submitted": 0,
        "jobs_resumed": 0,
        "estimated_usd": 0.0,
        "spent_usd": 0.0,
        "cached": result.cached + result.executed,
        "saved_usd": round(result.saved_usd + result.estimated_usd, 2),
    }
    body = {
        "context": _context(cache.root, plan.recipe.path, raw_vars, allow_outside, targets),
        "files": recorded,
        "summary": summary,
    }
    from motionflow.outfile import atomic_write_text

    atomic_write_text(stamp, json.dumps(body))
    return True
