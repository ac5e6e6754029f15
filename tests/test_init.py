"""``motionflow init`` makes a project that runs as it is, for free."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from motionflow.media.probe import probe


def cli(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from motionflow.cli import main; main()", *args],
        cwd=cwd,
        env={**os.environ, "MOTIONFLOW_CACHE": str(cache)},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


@pytest.mark.slow
def test_init_then_run(tmp_path: Path) -> None:
    folder = tmp_path / "My Dance"
    made = cli("init", str(folder), cwd=tmp_path, cache=tmp_path / "cache")
    assert made.returncode == 0, made.stderr
    for name in ("recipe.yaml", "README.md", ".gitignore", "motionflow.toml", "assets/hero.png"):
        assert (folder / name).is_file(), name
    assert (folder / ".gitignore").read_text() == "out/\n"
    assert "name: My-Dance" in (folder / "recipe.yaml").read_text()
    assert "motionflow run recipe.yaml" in (folder / "README.md").read_text()

    run = cli("run", "recipe.yaml", "--json", cwd=folder, cache=tmp_path / "cache")
    assert run.returncode == 0, run.stderr
    sheet = folder / "out" / "My-Dance" / "sheet.mp4"
    info = probe(sheet)
    assert info.video_codec == "h264" and info.height == 240
    again = cli("run", "recipe.yaml", cwd=folder, cache=tmp_path / "cache")
    assert "Nothing to do" in again.stdout

    refused = cli("init", str(folder), cwd=tmp_path, cache=tmp_path / "cache")
    assert refused.returncode == 2 and "would overwrite" in refused.stderr


def test_init_into_an_unwritable_place_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = cli("init", str(blocker / "project"), cwd=tmp_path, cache=tmp_path / "cache")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot write into" in proc.stderr and "writable folder" in proc.stderr


def test_init_defaults_to_the_current_folder(tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    (here / "notes.txt").write_text("mine\n")  # other files may be there
    made = cli("init", cwd=here, cache=tmp_path / "cache")
    assert made.returncode == 0, made.stderr
    for name in ("recipe.yaml", "README.md", ".gitignore", "motionflow.toml", "assets/dance.mp4"):
        assert (here / name).is_file(), name
    assert (here / "notes.txt").read_text() == "mine\n"
    assert "name: here" in (here / "recipe.yaml").read_text()
    assert "Next: motionflow run recipe.yaml" in made.stdout  # no `cd` into where you are

    # the docs it points at exist (in the motionflow repository), and nothing else is promised
    written = (here / "README.md").read_text() + (here / "recipe.yaml").read_text()
    named = set(re.findall(r"docs/[\w.-]+\.md", written))
    assert named and all((REPO / doc).is_file() for doc in named), named
    assert "pypi.org" not in written  # motionflow is installed from its repository

    again = cli("init", cwd=here, cache=tmp_path / "cache")  # a project is there already
    assert again.returncode == 2 and "motionflow.toml" in again.stderr
    assert "would overwrite" in again.stderr
