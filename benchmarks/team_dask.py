"""A CPU-heavy post-processing sweep: the local executor against a Dask LocalCluster.

Prints figures; it does not pass or fail. The sweep: N variants (default 200), each a GIF
made by ffmpeg from the sample dance clip at its own frame rate (free, offline, no paid
stage, no two instances alike). Each measurement is a whole process, started fresh in its own
temporary project and cache (nothing is cached, nothing is shared between them):

- ``local``: ``execute`` with the default in-process backend, ``jobs`` = the CPU count;
- ``dask``: ``open_backend("dask", workers=W)`` (a LocalCluster of W worker processes, one
  thread each), then ``execute`` with ``jobs`` = 2 W;
- ``ideal``: the local run's total work divided by the cores: its CPU time (this process and
  its ffmpeg children, user + system) / cores. The sum of the per-instance durations / cores
  is printed too; it overstates the work when instances contend for the cores.

For each, "process" is the wall time of the whole child process (interpreter start, imports,
planning, the cluster's start and stop, the run), and "run" is the time ``execute`` took
(for dask, the cluster was already up; its start is shown apart).

Usage: python benchmarks/team_dask.py [--variants 200] [--workers CPU_COUNT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ASSETS = ROOT / "recipes" / "assets"


def recipe_text(variants: int) -> str:
    """GIF after GIF, one frame rate per variant (20.00, 20.01, ... fps)."""
    rates = ", ".join(f"{20 + i / 100:.2f}" for i in range(variants))
    return f"""\
version: 1
name: gifs
matrix:
  fps: [{rates}]
inputs: {{dance: assets/dance.mp4}}
stages:
  gif:
    uses: video.gif
    with: {{src: "${{inputs.dance}}", duration: 4, width: 640, fps: "{{{{ fps }}}}"}}
outputs: [gif]
"""


def _project(base: Path, variants: int) -> Path:
    root = base / "proj"
    (root / "assets").mkdir(parents=True)
    (root / "motionflow.toml").write_text("", encoding="utf-8")
    shutil.copy(ASSETS / "dance.mp4", root / "assets" / "dance.mp4")
    recipe = root / "gifs.yaml"
    recipe.write_text(recipe_text(variants), encoding="utf-8")
    return recipe


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child(mode: str, recipe: Path, cache_root: Path, workers: int) -> dict[str, Any]:
    """One measured run, in this (fresh) process; returns its figures."""
    from motionflow import load_recipe
    from motionflow.cache.store import Cache
    from motionflow.engine import execute
    from motionflow.events import InstanceFinished
    from motionflow.plan import make_plan

    durations: list[float] = []

    def reporter(event: Any) -> None:
        if isinstance(event, InstanceFinished):
            durations.append(event.seconds)

    figures: dict[str, Any] = {"mode": mode}
    cache = Cache(cache_root)
    backend: Any = None
    try:
        if mode == "dask":
            from motionflow.engine.dask import open_backend

            began = time.monotonic()
            backend = open_backend("dask", cache_root=cache_root, workers=workers)
            figures["start_s"] = time.monotonic() - began
        plan = make_plan(load_recipe(recipe), cache)
        jobs = 2 * workers if backend is not None else os.cpu_count() or 1

        async def go() -> Any:
            try:
                return await execute(plan, cache, backend=backend, jobs=jobs, reporter=reporter)
            finally:
                if backend is not None:
                    stopped = time.monotonic()
                    await backend.aclose()
                    figures["stop_s"] = time.monotonic() - stopped

        cpu = _cpu_seconds()
        began = time.monotonic()
        result = asyncio.run(go())
        figures["run_s"] = time.monotonic() - began - figures.get("stop_s", 0.0)
        figures["cpu_s"] = _cpu_seconds() - cpu  # the workers' ffmpeg is not counted for dask
        figures["work_s"] = sum(durations)
        figures["executed"] = result.executed
        figures["failed"] = result.failed
        figures["jobs"] = jobs
    finally:
        cache.close()
    return figures


def _measure(mode: str, base: Path, variants: int, workers: int) -> dict[str, Any]:
    recipe = _project(base / mode, variants)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    command += ["--recipe", str(recipe), "--cache", str(base / mode / "cache")]
    command += ["--workers", str(workers)]
    began = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    wall = time.monotonic() - began
    if proc.returncode != 0:
        msg = f"the {mode} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        raise RuntimeError(msg)
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["process_s"] = wall
    if figures["failed"] or figures["executed"] != variants:
        msg = f"the {mode} run did not make {variants} GIFs: {figures}"
        raise RuntimeError(msg)
    return figures


def run_benchmark(variants: int = 200, workers: int | None = None) -> dict[str, Any]:
    """Run the sweep locally and on a LocalCluster of ``workers``; returns every figure.

    Keys: ``local`` and ``dask`` (per-run figures, seconds), ``ideal_s`` (local CPU time /
    cores), ``ideal_work_s`` (sum of local instance durations / cores), ``cores``,
    ``variants``, ``workers``.
    """
    cores = os.cpu_count() or 1
    workers = max(1, workers or cores)
    with tempfile.TemporaryDirectory(prefix="motionflow-dask-bench-") as tmp:
        base = Path(tmp)
        local = _measure("local", base, variants, workers)
        dask = _measure("dask", base, variants, workers)
    return {
        "variants": variants,
        "workers": workers,
        "cores": cores,
        "local": local,
        "dask": dask,
        "ideal_s": local["cpu_s"] / cores,
        "ideal_work_s": local["work_s"] / cores,
    }


def report(figures: dict[str, Any]) -> str:
    """The figures as a small table."""
    local, dask = figures["local"], figures["dask"]
    ideal = figures["ideal_s"]
    lines = [
        f"== dask: {figures['variants']} GIFs (ffmpeg, 640 px, 4 s each), "
        f"{figures['cores']} cores, LocalCluster of {figures['workers']} workers",
        f"{'':28} {'process s':>10} {'run s':>8} {'run / ideal':>12}",
        f"{'local executor (jobs=' + str(local['jobs']) + ')':28} {local['process_s']:10.1f}"
        f" {local['run_s']:8.1f} {local['run_s'] / ideal:12.2f}",
        f"{'LocalCluster (jobs=' + str(dask['jobs']) + ')':28} {dask['process_s']:10.1f}"
        f" {dask['run_s']:8.1f} {dask['run_s'] / ideal:12.2f}",
        f"{'ideal (CPU time / cores)':28} {'':>10} {ideal:8.1f} {1:12.2f}",
        f"cluster start {dask['start_s']:.1f} s, stop {dask.get('stop_s', 0):.1f} s (in"
        f" 'process', not in 'run'); local CPU time {local['cpu_s']:.1f} s; sum of local"
        f" instance durations {local['work_s']:.1f} s ({figures['ideal_work_s']:.1f} s / core)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--child", choices=["local", "dask"], help=argparse.SUPPRESS)
    parser.add_argument("--recipe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.recipe, args.cache, args.workers)))
        return
    print(report(run_benchmark(args.variants, args.workers)))


if __name__ == "__main__":
    main()
