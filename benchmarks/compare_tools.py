"""The 200-variant sweep of noop_sweep.py in motionflow, DVC and Snakemake, side by side.

Prints figures; it does not pass or fail (it stops if a tool errors or a run does the wrong
amount of work). Every figure is the wall time of a whole process, median of --repeat runs
(first builds: --build-repeat, default 1, since DVC's takes minutes).
The workload: 20 colors x 10 moves; per variant a "prompt" step writing "A dancer in {color}
doing a {move}, neon rooftop at night." and a "shout" step upper-casing it (400 steps).

DVC and Snakemake are not motionflow dependencies; install them in a separate venv:
python3 -m venv /tmp/cmp && /tmp/cmp/bin/pip install dvc snakemake, then pass
--dvc /tmp/cmp/bin/dvc --snakemake /tmp/cmp/bin/snakemake (default: found on PATH; a tool
not found is skipped).

Fairness: each tool runs a tiny Python step its fastest idiomatic way. motionflow: a `python`
stage, called in-process. Snakemake: `run:` blocks with --force-use-threads (Snakemake 9
otherwise spawns a Python subprocess per `run:` job), --cores 2, default locking. DVC: a
`matrix:` stage whose `cmd:` starts `python steps.py ...` (DVC can only run commands, so one
process per stage, one stage at a time), outputs cached as usual. All three get their own
cache/config dirs in the temp folder; DVC analytics and update checks are off.

Usage: python benchmarks/compare_tools.py [--repeat 5] [--build-repeat 1] [--dvc PATH]
       [--snakemake PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from noop_sweep import STEPS, TEMPLATE, sweep_recipe

MOVES = [f"m{i}" for i in range(10)]
COLORS = [f"c{i}" for i in range(20)]
ROWS = ["first build (400 steps)", "no-op re-run", "incremental (c0 renamed: 20 steps)"]
RECHECK = "no-op, motionflow run --recheck"

DVC_STEPS = """\
import sys
from pathlib import Path

out = Path(sys.argv[2])
if sys.argv[1] == "prompt":
    color, move = out.name.split("_")
    out.mkdir(parents=True, exist_ok=True)
    (out / "prompt.txt").write_text(f"A dancer in {color} doing a {move}, neon rooftop at night.")
else:
    (out / "shout.txt").write_text((out / "prompt.txt").read_text().upper())
"""

DVC_YAML = """\
stages:
  prompt:
    matrix: {{color: [{colors}], move: [{moves}]}}
    cmd: {py} steps.py prompt out/${{item.color}}_${{item.move}}
    deps: [steps.py]
    outs:
      - out/${{item.color}}_${{item.move}}/prompt.txt
  shout:
    matrix: {{color: [{colors}], move: [{moves}]}}
    cmd: {py} steps.py shout out/${{item.color}}_${{item.move}}
    deps:
      - steps.py
      - out/${{item.color}}_${{item.move}}/prompt.txt
    outs:
      - out/${{item.color}}_${{item.move}}/shout.txt
"""

SNAKEFILE = """\
COLORS = {colors!r}
MOVES = {moves!r}
TEXT = "A dancer in {{color}} doing a {{move}}, neon rooftop at night."
wildcard_constraints:
    color="[^_/]+",
    move="[^_/]+",

rule all:
    input: expand("out/{{color}}_{{move}}/shout.txt", color=COLORS, move=MOVES)

rule prompt:
    output: "out/{{color}}_{{move}}/prompt.txt"
    run:
        with open(output[0], "w") as f:
            f.write(TEXT.format(color=wildcards.color, move=wildcards.move))

rule shout:
    input: "out/{{color}}_{{move}}/prompt.txt"
    output: "out/{{color}}_{{move}}/shout.txt"
    run:
        with open(input[0]) as src, open(output[0], "w") as dst:
            dst.write(src.read().upper())
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run a whole process and time it; exit with its output if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return seconds, proc.stdout


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (root / "out").rglob("*.txt")}


class Tool:
    """One tool: how to write the project, how to run it, how to count what a run did."""

    def __init__(self, name: str, cmd: list[str], write: Callable[[Path, list[str]], None]):
        self.name, self.cmd, self.write = name, cmd, write

    def init(self, root: Path, env: dict[str, str]) -> None:  # noqa: ARG002
        root.mkdir(parents=True)
        self.write(root, COLORS)

    def steps_run(self, root: Path, env: dict[str, str]) -> tuple[float, int]:
        """Run the pipeline; return (seconds, files written) counted from the outputs' mtimes."""
        before = _mtimes(root)
        seconds, _ = _run(self.cmd, root, env)
        after = _mtimes(root)
        return seconds, sum(1 for p, m in after.items() if before.get(p) != m)


class Motionflow(Tool):
    def steps_run(self, root: Path, env: dict[str, str]) -> tuple[float, int]:
        seconds, out = _run(self.cmd, root, env)
        found = re.search(r'"executed": (\d+)', out)
        if found is None:
            sys.exit(f"no executed count in motionflow's output:\n{out}")
        return seconds, int(found.group(1))


class Dvc(Tool):
    def init(self, root: Path, env: dict[str, str]) -> None:
        super().init(root, env)
        dvc = self.cmd[0]
        _run([dvc, "init", "--no-scm", "--quiet"], root, env)
        for key, value in [("core.analytics", "false"), ("core.check_update", "false")]:
            _run([dvc, "config", key, value], root, env)
        _run([dvc, "config", "core.site_cache_dir", str(root / ".dvc-site")], root, env)


def _write_motionflow(root: Path, colors: list[str]) -> None:
    (root / "motionflow.toml").write_text("", encoding="utf-8")
    (root / "steps.py").write_text(STEPS, encoding="utf-8")
    recipe = sweep_recipe("sweep", {"color": colors, "move": MOVES}, TEMPLATE)
    (root / "sweep.yaml").write_text(recipe, encoding="utf-8")


def _write_dvc(root: Path, colors: list[str]) -> None:
    (root / "steps.py").write_text(DVC_STEPS, encoding="utf-8")
    text = DVC_YAML.format(
        colors=", ".join(colors), moves=", ".join(MOVES), py=shlex.quote(sys.executable)
    )
    (root / "dvc.yaml").write_text(text, encoding="utf-8")


def _write_snakemake(root: Path, colors: list[str]) -> None:
    (root / "Snakefile").write_text(SNAKEFILE.format(colors=colors, moves=MOVES), "utf-8")


def _measure(
    tool: Tool, work: Path, env: dict[str, str], repeat: int, builds: int
) -> dict[str, list[float]]:
    """Time the rows of the table for one tool; check each run did the expected work.

    motionflow reports the instances it executed; for the others, output files written.
    """

    def timed(tool: Tool, root: Path, row: str, expected: int) -> float:
        seconds, done = tool.steps_run(root, env)
        if done != expected:
            sys.exit(f"{tool.name}, {row}: expected {expected} steps/files, counted {done}")
        return seconds

    figures: dict[str, list[float]] = {row: [] for row in ROWS}
    root = work
    for i in range(builds):  # each first build in a new project (and a new motionflow cache)
        root = work / f"{tool.name}-{i}"
        env["MOTIONFLOW_CACHE"] = str(work / f"{tool.name}-{i}-cache")
        tool.init(root, env)
        figures[ROWS[0]].append(timed(tool, root, ROWS[0], 400))
    figures[ROWS[1]] = [timed(tool, root, ROWS[1], 0) for _ in range(repeat)]
    if isinstance(tool, Motionflow):
        recheck = Motionflow(tool.name, [*tool.cmd, "--recheck"], tool.write)
        figures[RECHECK] = [timed(recheck, root, RECHECK, 0) for _ in range(repeat)]
    for i in range(repeat):  # a new value each round, so no tool finds it in a cache
        tool.write(root, [f"x{i}", *COLORS[1:]])
        figures[ROWS[2]].append(timed(tool, root, ROWS[2], 20))
    return figures


def _version(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (proc.stdout or proc.stderr).strip().splitlines()[-1] if proc.returncode == 0 else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--build-repeat",
        type=int,
        default=1,
        help="first builds per tool [1: DVC's takes minutes]",
    )
    parser.add_argument("--dvc", default="dvc", help="dvc executable [found on PATH]")
    parser.add_argument("--snakemake", default="snakemake", help="[found on PATH]")
    args = parser.parse_args()
    dvc, snakemake = shutil.which(args.dvc), shutil.which(args.snakemake)
    mf = shutil.which("motionflow")
    if mf is None:
        sys.exit("motionflow is not on PATH: pip install -e . first")
    # As in noop_sweep.py: measure motionflow, not the bytecode compiler.
    import compileall

    import motionflow

    compileall.compile_dir(Path(motionflow.__file__).parent, quiet=1)

    tools: list[Tool] = [
        Motionflow("motionflow", [mf, "run", "sweep.yaml", "--json"], _write_motionflow)
    ]
    versions = {"motionflow": _version([mf, "--version"])}
    if dvc:
        tools.append(Dvc("DVC", [dvc, "repro", "--quiet"], _write_dvc))
        versions["DVC"] = _version([dvc, "--version"])
    else:
        print(f"note: {args.dvc} not found (pass --dvc PATH); DVC skipped")
    if snakemake:
        sm = [snakemake, "all", "--cores", "2", "--force-use-threads", "--quiet"]
        tools.append(Tool("Snakemake", sm, _write_snakemake))
        versions["Snakemake"] = _version([snakemake, "--version"])
    else:
        print(f"note: {args.snakemake} not found (pass --snakemake PATH); Snakemake skipped")

    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="mf-compare-") as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "XDG_CACHE_HOME": str(work / "xdg-cache"),
            "XDG_CONFIG_HOME": str(work / "xdg-config"),
            "DVC_GLOBAL_CONFIG_DIR": str(work / "dvc-global"),
            "DVC_SYSTEM_CONFIG_DIR": str(work / "dvc-system"),
            "DVC_NO_ANALYTICS": "1",
        }
        for tool in tools:
            print(f"measuring {tool.name} ...", file=sys.stderr, flush=True)
            results[tool.name] = _measure(
                tool, work, dict(env), args.repeat, max(1, args.build_repeat)
            )

    print(
        f"motionflow vs DVC vs Snakemake: 200-variant sweep, wall s, median of {args.repeat}"
        f" (first builds: {max(1, args.build_repeat)})"
    )
    print(f"  python {platform.python_version()}, nproc {os.cpu_count()}")
    for name, version in versions.items():
        print(f"  {name}: {version}")
    names = [t.name for t in tools]
    print()
    print(f"  {'measurement':<36}" + "".join(f"{n:>12}" for n in names) + "  ratio tool/motionflow")
    for row in [*ROWS, RECHECK]:
        meds = {n: statistics.median(results[n][row]) for n in names if row in results[n]}
        cells = "".join(f"{meds[n]:12.3f}" if n in meds else f"{'-':>12}" for n in names)
        base = meds["motionflow"]
        ratios = ", ".join(f"{n} {meds[n] / base:.1f}x" for n in names[1:] if n in meds)
        print(f"  {row:<36}{cells}  {ratios}")
    print()
    print("  motionflow: python stage in-process (threads); Snakemake: run: blocks in threads")
    print("  (--force-use-threads, --cores 2); DVC: one `python steps.py` process per stage,")
    print("  stages run one at a time (dvc repro has no parallelism).")


if __name__ == "__main__":
    main()
