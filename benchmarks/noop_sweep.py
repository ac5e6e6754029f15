"""No-op re-run of a 200-variant sweep, and planning 10,000 variants, as whole processes.

Prints figures; it does not pass or fail. Targets (issue #2, 2-core machine):
  - no-op re-run of 200 variants: under 0.3 s wall (DVC ~2.0 s, Snakemake ~0.85 s)
  - plan of 10,000 variants: under 2 s wall (issue #14: under 1.5 s)

Usage: python benchmarks/noop_sweep.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = """\
version: 1
name: {name}
vars: {{style: "neon rooftop at night"}}
matrix:
{axes}
stages:
  prompt:
    uses: prompt
    with: {{template: "{template}"}}
  shout:
    uses: python
    with: {{call: "steps:shout", text: "${{stages.prompt.text}}"}}
outputs: [prompt, shout]
"""


def sweep_recipe(name: str, axes: dict[str, list[str]], template: str) -> str:
    """The benchmarks' recipe (also used by scale.py and compare_tools.py): a ``prompt`` stage
    rendering ``template`` and a ``python`` stage upper-casing it, for every variant."""
    lines = "\n".join(f"  {axis}: [{', '.join(values)}]" for axis, values in axes.items())
    return RECIPE.format(name=name, axes=lines, template=template)


#: the prompt of noop_sweep.py and compare_tools.py (20 colors x 10 moves)
TEMPLATE = "A dancer in {{ color }} doing a {{ move }}, {{ style }}."

STEPS = """\
def shout(text):
    return text.upper()
"""


def _axis(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _write_project(root: Path, name: str, colors: int, moves: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "motionflow.toml").write_text("", encoding="utf-8")
    (root / "steps.py").write_text(STEPS, encoding="utf-8")
    recipe = root / f"{name}.yaml"
    recipe.write_text(
        sweep_recipe(name, {"color": _axis("c", colors), "move": _axis("m", moves)}, TEMPLATE),
        encoding="utf-8",
    )
    return recipe


def _motionflow() -> list[str]:
    exe = shutil.which("motionflow")
    if exe is None:
        sys.exit("motionflow is not on PATH: pip install -e . first")
    return [exe]


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    base = _motionflow()
    # A user's second invocation reads motionflow's bytecode from __pycache__; make sure it is
    # there even where PYTHONDONTWRITEBYTECODE is set (as on our CI machines), so the figures
    # measure motionflow, not the compiler.
    import compileall

    import motionflow

    compileall.compile_dir(Path(motionflow.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory(prefix="mf-bench-") as tmp:
        env = {**os.environ, "MOTIONFLOW_CACHE": str(Path(tmp) / "cache")}
        recipe = _write_project(Path(tmp) / "sweep", "sweep200", 20, 10)
        first, proc = _timed([*base, "run", str(recipe), "--quiet"], env)
        if proc.returncode != 0:
            sys.exit(f"first run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        noop = []
        for _ in range(args.repeat):
            seconds, proc = _timed([*base, "run", str(recipe), "--json"], env)
            if proc.returncode != 0 or '"executed": 0' not in proc.stdout:
                sys.exit(f"the re-run was not a no-op:\n{proc.stdout}\n{proc.stderr}")
            noop.append(seconds)
        full = []
        for _ in range(args.repeat):
            seconds, proc = _timed([*base, "run", str(recipe), "--json", "--recheck"], env)
            if proc.returncode != 0 or '"executed": 0' not in proc.stdout:
                sys.exit(f"the full re-check was not a no-op:\n{proc.stdout}\n{proc.stderr}")
            full.append(seconds)

        big = _write_project(Path(tmp) / "big", "sweep10k", 100, 100)
        plans = []
        for _ in range(max(3, args.repeat // 2)):
            seconds, proc = _timed([*base, "plan", str(big), "--json"], env)
            if proc.returncode != 0:
                sys.exit(f"plan failed:\n{proc.stderr}")
            plans.append(seconds)
        bare, _ = _timed([sys.executable, "-c", "pass"], env)

    print("motionflow no-op benchmark (whole processes, wall seconds, median of runs)")
    print(f"  python startup alone:                      {bare:6.3f}")
    print(f"  first run, 200 variants (400 instances):   {first:6.3f}")
    print(
        f"  no-op re-run, 200 variants:                {statistics.median(noop):6.3f}"
        f"   (target < 0.300; min {min(noop):.3f})"
    )
    print(
        f"  no-op re-run with --recheck (full plan):   {statistics.median(full):6.3f}"
        f"   (min {min(full):.3f})"
    )
    print(
        f"  plan of 10,000 variants (20,000 instances): {statistics.median(plans):5.3f}"
        f"   (target < 1.500; min {min(plans):.3f})"
    )


if __name__ == "__main__":
    main()
