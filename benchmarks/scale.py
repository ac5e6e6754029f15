"""Planning and bookkeeping at 200 to 100,000 variants, as whole processes.

Prints figures; it does not pass or fail. For each size and each matrix shape (one axis of N
values; several axes whose product is N) it builds a project like the one in
``noop_sweep.py`` (a ``prompt`` stage and a ``python`` stage per variant) and measures, as
a user would see them:

  plan         ``motionflow plan --json`` on an empty cache
  first build  ``motionflow run --quiet`` on an empty cache (all 2N instances run), after
               ``sync``; every project is kept until the end (about 4 GB at 100,000
               variants), since creating files just after deleting many is slow on ext4
  no-op        ``motionflow run --json`` again (answered by the run stamp)
  --recheck    ``motionflow run --json --recheck`` (a full plan, nothing to run)
  incremental  one value of the first axis changed, then ``motionflow run --json``: 2
               instances run with one axis, 2 x (N / that axis's length) with several

with the peak resident memory of each process, and the growth per added variant between
one size and the next: (t(N) - t(previous N)) / (N - previous N).

Targets (issue #14, 2-core machine): plan of 200 variants < 0.3 s, of 10,000 < 1.5 s, of
100,000 < 15 s and < 1 GiB, growing linearly (the cost of a variant added at 100,000 within
1.3x of one added at 1,000); incremental with one change < 0.4 s plus the work; a first
build under 2 ms of overhead per instance.

Usage:
    python benchmarks/scale.py                          # every size, both shapes
    python benchmarks/scale.py --sizes 200,1000 --repeat 5
    python benchmarks/scale.py --skip-build-above 10000 # no first build at 100,000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from noop_sweep import STEPS, sweep_recipe

AXIS_NAMES = "abcdefgh"


SEVERAL = {200: [20, 10], 1_000: [10, 10, 10], 10_000: [100, 100], 100_000: [100, 100, 10]}


def shape_axes(size: int, shape: str) -> list[int]:
    """The axis lengths of a matrix of ``size`` variants: one axis, or several of <= 100."""
    if shape == "one":
        return [size]
    if size in SEVERAL:
        return SEVERAL[size]
    lengths: list[int] = []
    rest = size
    while rest > 100:
        length = next((n for n in range(100, 1, -1) if rest % n == 0), rest)
        lengths.append(length)
        rest //= length
    return [*lengths, rest] if rest > 1 else lengths


def write_project(root: Path, size: int, shape: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "motionflow.toml").write_text("", encoding="utf-8")
    (root / "steps.py").write_text(STEPS, encoding="utf-8")
    lengths = shape_axes(size, shape)
    names = AXIS_NAMES[: len(lengths)]
    axes = {a: [f"{a}{j}" for j in range(n)] for a, n in zip(names, lengths, strict=True)}
    template = "A dancer in " + " ".join(f"{{{{ {a} }}}}" for a in names) + ", {{ style }}."
    recipe = root / "scale.yaml"
    recipe.write_text(sweep_recipe(f"scale{size}{shape}", axes, template), encoding="utf-8")
    return recipe


def change_one_value(recipe: Path, round_: int) -> None:
    """Rename the first value of the first axis: one variant's two instances are new."""
    text = recipe.read_text(encoding="utf-8")
    first = text.index("[a") + 1
    end = min(i for i in (text.index(",", first), text.index("]", first)) if i > 0)
    recipe.write_text(f"{text[:first]}a0x{round_}{text[end:]}", encoding="utf-8")


@dataclass
class Measure:
    seconds: list[float] = field(default_factory=list)
    peak_kib: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else math.nan

    @property
    def peak_mib(self) -> float:
        return max(self.peak_kib) / 1024 if self.peak_kib else math.nan


def peak_of(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB, and stdout of one whole process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if proc.returncode != 0:
            sys.exit(
                f"{' '.join(cmd[1:])} failed ({proc.returncode}):\n{text[-2000:]}\n"
                f"{err.read().decode()[-2000:]}"
            )
    return seconds, int(usage.ru_maxrss), text


def run_measure(
    cmd: list[str], env: dict[str, str], into: Measure, expect: str | None = None
) -> None:
    seconds, peak, out = peak_of(cmd, env)
    if expect is not None and expect not in out:
        sys.exit(f"{' '.join(cmd[1:])} did not print {expect!r}:\n{out[-2000:]}")
    into.seconds.append(seconds)
    into.peak_kib.append(peak)


KINDS = ("plan", "first build", "plan, built", "no-op", "--recheck", "incremental")


def measure_size(
    exe: list[str], work: Path, size: int, shape: str, repeat: int, build: bool
) -> dict[str, Measure]:
    figures = {kind: Measure() for kind in KINDS}
    root = work / f"{shape}-{size}"
    recipe = write_project(root, size, shape)
    env = {
        **os.environ,
        "MOTIONFLOW_MAX_VARIANTS": str(max(size, 10_000)),
        "MOTIONFLOW_CACHE": str(root / "cache"),
    }
    # Scale the repeats down with the size, so 100,000 variants take minutes, not hours.
    reps = max(1, repeat if size <= 1_000 else repeat // 2 if size <= 10_000 else 1)
    plan = [*exe, "plan", str(recipe), "--json"]
    run = [*exe, "run", str(recipe), "--json"]
    # small sizes: more plans, since growth per variant is a difference of close figures
    for _ in range(3 * reps if size <= 1_000 else reps):
        run_measure(plan, env, figures["plan"])
    if not build:
        return figures
    for round_ in range(reps if size <= 1_000 else 1):
        # Each first build in a project and cache of its own. Nothing is deleted until the
        # end: on ext4, creating files right after deleting thousands is several times
        # slower (the deletions are still being committed), which would measure the disk.
        again = root.with_name(f"{root.name}-build{round_}")
        build = write_project(again, size, shape) if round_ else recipe
        build_env = {**env, "MOTIONFLOW_CACHE": str(again / "cache")} if round_ else env
        os.sync()  # what earlier runs wrote is flushed first, not during the build measured
        run_measure([*exe, "run", str(build), "--quiet"], build_env, figures["first build"])
    for _ in range(reps):
        run_measure(plan, env, figures["plan, built"])
    for _ in range(reps):
        run_measure(run, env, figures["no-op"], '"executed": 0')
    for _ in range(reps):
        run_measure([*run, "--recheck"], env, figures["--recheck"], '"executed": 0')
    changed = math.prod(shape_axes(size, shape)[1:])
    for round_ in range(reps):
        change_one_value(recipe, round_)
        run_measure(run, env, figures["incremental"], f'"executed": {2 * changed}')
    return figures


Results = dict[tuple[str, int], dict[str, Measure]]


def _table(results: Results, sizes: list[int], shape: str) -> None:
    title = "one axis" if shape == "one" else "several axes"
    print(f"\n{title}: wall seconds (median), peak MiB in brackets")
    print(f"  {'variants':>9}  " + "".join(f"{k:>17}" for k in KINDS) + "  axes")
    previous: tuple[int, dict[str, Measure]] | None = None
    growth_rows: list[str] = []
    for size in sizes:
        figures = results.get((shape, size))
        if figures is None:
            continue
        cells = [
            f"{m.median:8.3f} [{m.peak_mib:5.0f}]" if m.seconds else f"{'-':>16}"
            for m in (figures[kind] for kind in KINDS)
        ]
        label = "x".join(str(n) for n in shape_axes(size, shape))
        print(f"  {size:>9,}  " + "".join(f"{c:>17}" for c in cells) + f"  {label}")
        if previous is not None:
            psize, pfig = previous
            cells = []
            for kind in KINDS:
                a, b = pfig[kind], figures[kind]
                if a.seconds and b.seconds:
                    growth = (b.median - a.median) / (size - psize) * 1000
                    cells.append(f"{growth:16.4f}")
                else:
                    cells.append(f"{'-':>16}")
            growth_rows.append(f"  {size:>9,}  " + "".join(f"{c:>17}" for c in cells))
        previous = (size, figures)
    print("  growth per added variant, ms: (t(N) - t(previous N)) / (N - previous N)")
    for row in growth_rows:
        print(row)


def _median(results: Results, shape: str, size: int, kind: str) -> float:
    figures = results.get((shape, size))
    return figures[kind].median if figures and figures[kind].seconds else math.nan


def _marginal(results: Results, shape: str, kind: str, low: int, high: int) -> float:
    a, b = _median(results, shape, low, kind), _median(results, shape, high, kind)
    return (b - a) / (high - low)


def _check(label: str, value: float, target: float, unit: str, scale: float = 1.0) -> None:
    if math.isnan(value):
        print(f"  {label:<72} not measured")
        return
    verdict = "met" if value < target else "MISSED"
    shown = f"{value * scale:9.3f} {unit}"
    print(f"  {label:<72} {shown:>13} (target < {target * scale:g}) {verdict}")


def report_targets(results: Results, sizes: list[int], shapes: list[str]) -> None:
    print("\ntargets (issue #14)")
    for shape in shapes:
        name = "one axis" if shape == "one" else "several axes"

        def median(size: int, kind: str, shape: str = shape) -> float:
            return _median(results, shape, size, kind)

        _check(f"plan, 200 variants, {name}", median(200, "plan"), 0.3, "s")
        _check(
            f"plan of the built sweep, 200 variants, {name}", median(200, "plan, built"), 0.3, "s"
        )
        _check(f"plan, 10,000 variants, {name}", median(10_000, "plan"), 1.5, "s")
        _check(f"plan, 100,000 variants, {name}", median(100_000, "plan"), 15.0, "s")
        figures = results.get((shape, 100_000))
        peak = figures["plan"].peak_mib if figures and figures["plan"].seconds else math.nan
        _check(f"plan, 100,000 variants, {name}: peak memory", peak, 1024.0, "MiB")
        low = _marginal(results, shape, "plan", 200, 1_000)
        high = _marginal(results, shape, "plan", 10_000, 100_000)
        _check(f"plan, {name}: growth at 100,000 / growth at 1,000", high / low, 1.3, "x")
        per_low = median(1_000, "plan") / 1_000
        per_high = median(100_000, "plan") / 100_000
        _check(f"plan, {name}: t(N)/N at 100,000 / t(N)/N at 1,000", per_high / per_low, 1.3, "x")
        if shape == "one":  # one value changed: 2 instances run
            work = 2 * median(200, "first build") / 400  # an upper bound: overhead included
            _check(
                f"incremental, 200 variants, one change, minus its work ({work * 1000:.1f} ms)",
                median(200, "incremental") - work,
                0.4,
                "s",
            )
        for size in sizes:
            # motionflow's own time per instance: the build beyond its plan (which has targets
            # of its own, above); the whole process per instance is shown beside it
            build, plan = median(size, "first build"), median(size, "plan")
            whole = f"whole process {build / (2 * size) * 1000:.2f}"
            label = f"first build, {size:,}, {name}: ms per instance ({whole})"
            _check(label, (build - plan) / (2 * size), 0.002, "ms", 1000)


def report(results: Results, sizes: list[int], shapes: list[str]) -> None:
    print("motionflow at scale (whole processes; 2 instances a variant)")
    print(f"  python {sys.version.split()[0]}, {os.cpu_count()} cores")
    for shape in shapes:
        _table(results, sizes, shape)
    report_targets(results, sizes, shapes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000,10000,100000")
    parser.add_argument("--shapes", default="one,several")
    parser.add_argument("--repeat", type=int, default=5, help="repeats at <= 1,000 variants")
    parser.add_argument("--skip-build-above", type=int, default=10**9)
    parser.add_argument("--json", dest="json_out", help="also write every figure here")
    parser.add_argument("--from-json", help="print the report of figures --json saved; no runs")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    shapes = args.shapes.split(",")
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        results = {
            (name.split("-")[0], int(name.split("-")[1])): {
                kind: Measure(m["seconds"], m["peak_kib"]) for kind, m in figures.items()
            }
            for name, figures in saved.items()
        }
        report(results, sizes, shapes)
        return
    exe = shutil.which("motionflow")
    if exe is None:
        sys.exit("motionflow is not on PATH: pip install -e . first")
    import compileall

    import motionflow

    compileall.compile_dir(Path(motionflow.__file__).parent, quiet=1)
    results: dict[tuple[str, int], dict[str, Measure]] = {}
    with tempfile.TemporaryDirectory(prefix="mf-scale-") as tmp:
        for size in sizes:
            for shape in args.shapes.split(","):
                started = time.perf_counter()
                results[(shape, size)] = measure_size(
                    [exe], Path(tmp), size, shape, args.repeat, size <= args.skip_build_above
                )
                took = time.perf_counter() - started
                print(
                    f"  measured {shape} axis, {size:,} variants in {took:.0f} s", file=sys.stderr
                )
    report(results, sizes, shapes)
    if args.json_out:
        data = {
            f"{shape}-{size}": {
                k: {"seconds": m.seconds, "peak_kib": m.peak_kib} for k, m in f.items()
            }
            for (shape, size), f in results.items()
        }
        Path(args.json_out).write_text(json.dumps(data, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
