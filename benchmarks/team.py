"""Team scale: a shared S3 cache and a Dask cluster, measured as whole processes.

Prints figures; it does not pass or fail. What issue 13 asks for:

1. ``reuse``: seconds and bytes for machine B to reuse machine A's 20-variant sweep through
   the shared remote cache (a local S3 endpoint: moto's server on 127.0.0.1), against B
   making it all again without the remote.
2. ``concurrent``: submits made by two runs of the same paid sweep started at the same moment
   on two machines (two caches, one fake EmpirioLabs account, one remote): the target is one
   submit per generation.
3. ``dask``: a CPU-heavy 200-variant post-processing sweep, wall time with the local
   executor, with a ``LocalCluster``, and the ideal (work / cores): benchmarks/team_dask.py.

Usage: python benchmarks/team.py [--part reuse|concurrent|dask|all] [--variants 20]
       [--dask-variants 200] [--repeat 3]

Everything happens in temporary folders; needs the dev extra (moto, boto3, dask).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from s3rig import moto_endpoint, new_bucket, use_fake_aws

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ASSETS = ROOT / "recipes" / "assets"

SWEEP = """\
version: 1
name: sweep
provider: {provider}
{publish}matrix:
  outfit: [{outfits}]
inputs: {{hero: assets/hero.png, dance: assets/dance.mp4}}
stages:
  clip: {{uses: video.prepare, with: {{src: "${{inputs.dance}}", duration: 3}}}}
  still: {{uses: image.prepare, with: {{src: "${{inputs.hero}}"}}}}
  prompt: {{uses: prompt, with: {{template: "A dancer wearing {{{{ outfit }}}}."}}}}
  take:
    uses: kling.motion_control
    with:
      image: "${{stages.still.image}}"
      video: "${{stages.clip.video}}"
      prompt: "${{stages.prompt.text}}"
      character_orientation: video
      duration: 3
  thumb: {{uses: video.thumbnail, with: {{src: "${{stages.take.video}}"}}}}
outputs: [take, thumb]
"""


def _project(base: Path, name: str, variants: int, provider: str, publish: str = "") -> Path:
    root = base / name
    (root / "assets").mkdir(parents=True)
    (root / "motionflow.toml").write_text("", "utf-8")
    for asset in ("hero.png", "dance.mp4"):
        shutil.copy(ASSETS / asset, root / "assets" / asset)
    outfits = ", ".join(f"outfit {i}" for i in range(variants))
    text = SWEEP.format(provider=provider, outfits=outfits, publish=publish)
    (root / "sweep.yaml").write_text(text, "utf-8")
    return root


def _motionflow(
    root: Path, cache: Path, *args: str, env: dict[str, str]
) -> tuple[float, dict[str, Any]]:
    command = [sys.executable, "-c", "from motionflow.cli import main; main()"]
    full = {**env, "MOTIONFLOW_CACHE": str(cache)}
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "run", "sweep.yaml", "--json", "--no-report", *args],
        cwd=root,
        env=full,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if not done.stdout.strip():
        raise SystemExit(f"motionflow run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, json.loads(done.stdout)


class _Moto:
    """moto's S3 server (tests/s3rig.py: its conditional writes atomic, as S3's are)."""

    def __init__(self) -> None:
        self._endpoint = moto_endpoint()
        self.endpoint = self._endpoint.__enter__()

    def bucket(self) -> str:
        return f"s3://{new_bucket(self.endpoint)}/mf?endpoint={self.endpoint}"

    def stop(self) -> None:
        self._endpoint.__exit__(None, None, None)


def reuse(variants: int, repeat: int) -> None:
    """Machine B reuses machine A's sweep through the remote: seconds, bytes, submits."""
    env = dict(os.environ)
    moto = _Moto()
    rows: list[tuple[str, list[float], dict[str, Any]]] = []
    try:
        a_walls: list[float] = []
        b_walls: list[float] = []
        alone_walls: list[float] = []
        a_last: dict[str, Any] = {}
        b_last: dict[str, Any] = {}
        alone_last: dict[str, Any] = {}
        for _ in range(repeat):
            with tempfile.TemporaryDirectory(prefix="mf-team-") as tmp:
                base = Path(tmp)
                remote = moto.bucket()
                a_root = _project(base, "a", variants, "simulate")
                b_root = _project(base, "b", variants, "simulate")
                alone_root = _project(base, "alone", variants, "simulate")
                wall, a_last = _motionflow(a_root, base / "cache-a", "--remote", remote, env=env)
                a_walls.append(wall)
                wall, b_last = _motionflow(b_root, base / "cache-b", "--remote", remote, env=env)
                b_walls.append(wall)
                wall, alone_last = _motionflow(alone_root, base / "cache-c", env=env)
                alone_walls.append(wall)
        rows = [
            ("A makes the sweep, pushes", a_walls, a_last),
            ("B reuses it from the remote", b_walls, b_last),
            ("B makes it alone (no remote)", alone_walls, alone_last),
        ]
    finally:
        moto.stop()
    print(
        f"\n== reuse: a {variants}-variant sweep, machine B after machine A (medians of {repeat})"
    )
    print(f"{'run':32} {'wall s':>8} {'ran':>5} {'reused':>6} {'submits':>7} {'pulled':>14}")
    for name, walls, data in rows:
        remote_data = data.get("remote") or {}
        pulled = (
            f"{remote_data.get('pulled', 0)} / {remote_data.get('pulled_bytes', 0) / 1e6:.1f} MB"
        )
        print(
            f"{name:32} {statistics.median(walls):8.2f} {data['executed']:5d} "
            f"{data['cached']:6d} {data['jobs_submitted']:7d} {pulled:>14}"
        )
    pushed = (rows[0][2].get("remote") or {}).get("pushed_bytes", 0)
    print(f"A pushed {pushed / 1e6:.1f} MB; B submitted {rows[1][2]['jobs_submitted']} jobs.")


def concurrent(variants: int, repeat: int) -> None:
    """Two machines start the same paid sweep at once: submits per generation."""
    from service import Service, make_service, new_project  # the tests' paid-run rig

    from motionflow.publish.fileserver import FileServer

    moto = _Moto()
    outfits = [f"outfit {i}" for i in range(variants)]
    rows: list[tuple[int, int, float]] = []
    try:
        for _ in range(repeat):
            with tempfile.TemporaryDirectory(prefix="mf-race-") as tmp:
                base = Path(tmp)
                remote = moto.bucket()
                a_root, a_cache = new_project(base / "a")
                a = make_service(a_root, a_cache)  # the fake account, A's file host
                b_root, b_cache = new_project(base / "b")
                static = FileServer(b_root / "published")
                static.start()  # B publishes from its own disk to the same account
                b = Service(
                    b_root, b_cache, a.fake, static, {**a.env, "MOTIONFLOW_CACHE": str(b_cache)}
                )
                for machine in (a, b):
                    machine.recipe(outfits)
                started = time.perf_counter()
                procs = [m.popen("run", "paid.yaml", "--json", "--remote", remote) for m in (a, b)]
                for proc in procs:
                    proc.communicate(timeout=600)
                wall = time.perf_counter() - started
                counts = a.submits_by_prompt()
                rows.append((sum(counts.values()), sum(n - 1 for n in counts.values()), wall))
                for machine in (a, b):
                    machine.static.stop()
                a.fake.stop()
    finally:
        moto.stop()
    print(f"\n== concurrent: two machines start the same {variants}-generation paid sweep at once")
    print(f"{'round':>5} {'generations':>11} {'submits':>8} {'paid twice':>10} {'wall s':>7}")
    for i, (total, twice, wall) in enumerate(rows, 1):
        print(f"{i:5d} {variants:11d} {total:8d} {twice:10d} {wall:7.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["reuse", "concurrent", "dask", "all"], default="all")
    parser.add_argument("--variants", type=int, default=20)
    parser.add_argument("--dask-variants", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    use_fake_aws(os.environ, Path(tempfile.mkdtemp(prefix="mf-aws-")))
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if args.part in {"reuse", "all"}:
        reuse(args.variants, args.repeat)
    if args.part in {"concurrent", "all"}:
        concurrent(min(args.variants, 8), args.repeat)
    if args.part in {"dask", "all"}:
        sys.path.insert(0, str(HERE))
        import team_dask

        team_dask.main(["--variants", str(args.dask_variants), "--workers", str(args.workers)])


if __name__ == "__main__":
    main()
