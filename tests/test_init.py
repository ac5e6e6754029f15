"""``motionflow init`` makes a project that runs as it is, for free."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
