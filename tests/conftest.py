"""Shared fixtures: a throwaway project with the sample assets, and the CLI as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hostile.corpus import SMALL

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "recipes" / "assets"


@dataclass
class Project:
    """A project folder (with motionflow.toml) and its own cache directory."""

    root: Path
    cache: Path

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``motionflow ARGS`` as a user would, in the project folder."""
        full_env = {**os.environ, "MOTIONFLOW_CACHE": str(self.cache), **(env or {})}
        return subprocess.run(
            [sys.executable, "-c", "from motionflow.cli import main; main()", *args],
            cwd=self.root,
            env=full_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def run_json(self, *args: str) -> dict[str, Any]:
        proc = self.cli("run", *args, "--json")
        assert "Traceback" not in proc.stderr, proc.stderr
        data: dict[str, Any] = json.loads(proc.stdout)
        data["_exit"] = proc.returncode
        data["_stderr"] = proc.stderr
        return data

    def plan_json(self, *args: str) -> dict[str, Any]:
        proc = self.cli("plan", *args, "--json")
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def out(self, recipe: str) -> Path:
        return self.root / "out" / recipe


SMALL_RECIPE = SMALL
"""Two simulated generations and their prompts: the smallest paid recipe (tests of plans; it
is the corpus's base recipe too, ``tests/hostile/corpus.py``, which runs without pytest)."""

TINY_RECIPE = """\
version: 1
name: tiny
provider: simulate
vars: {style: "a dancer"}
inputs: {hero: assets/hero.png, dance: assets/dance.mp4}
stages:
  prompt: {uses: prompt, with: {template: "{{ style }} on a rooftop"}}
  take:
    uses: kling.motion_control
    with:
      image: "${inputs.hero}"
      video: "${inputs.dance}"
      prompt: "${stages.prompt.text}"
      character_orientation: video
      duration: 3
  still: {uses: image.prepare, with: {src: "${inputs.hero}"}}
outputs: [take, still]
"""
"""A prompt, a simulated generation and a prepared image: the cache tools' test recipe."""


def repaint(image: Path) -> None:
    """Overwrite ``image`` with a plain blue 400x600 picture (a changed input)."""
    from motionflow.media.ffmpeg import find_ffmpeg

    command = [find_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=blue:s=400x600"]
    subprocess.run([*command, "-frames:v", "1", str(image)], check=True)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    (root / "assets").mkdir(parents=True)
    (root / "motionflow.toml").write_text("", encoding="utf-8")
    for name in ("hero.png", "dance.mp4"):
        shutil.copy(ASSETS / name, root / "assets" / name)
    return Project(root, tmp_path / "cache")


@pytest.fixture
def files_under() -> Callable[[Path], dict[str, tuple[int, int]]]:
    """Snapshot of (size, mtime_ns) of every file under a folder."""

    def snap(folder: Path) -> dict[str, tuple[int, int]]:
        return {
            str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    return snap


@pytest.fixture
def service(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The paid-run rig of ``service.py``: the fake EmpirioLabs server and a static host.

    ``@pytest.mark.fake(...)`` passes FakeConfig settings (``faults=Faults(...)``).
    """
    from service import make_service, new_project

    marker = request.node.get_closest_marker("fake")
    config = dict(marker.kwargs) if marker else {}
    root, cache = new_project(tmp_path)
    svc = make_service(root, cache, **config)
    try:
        yield svc
    finally:
        svc.static.stop()
        svc.fake.stop()
