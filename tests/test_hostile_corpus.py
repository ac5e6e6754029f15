"""Every case of the hostile corpus (``tests/hostile/corpus.py``) is refused cleanly.

Requirement (issue 10): a bad recipe, file, flag or environment ends fast with exit code 2, a
message naming the item, its cause and the fix; no traceback; never the last-resort handler
("internal error", exit 70), which only a bug may reach; nothing written to the cache
(beyond its index of input digests) or ``out/``, nothing in the home folder, and no project
file changed. Each command runs the real
CLI as a subprocess whose timeout is the guard against a hang (nothing is timed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Project
from hostile.corpus import Case, all_cases

CASES = {case.name: case for case in all_cases()}
CLI = [sys.executable, "-c", "from motionflow.cli import main; main()"]


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every regular file under ``folder`` (FIFOs are not opened)."""
    if not folder.exists():
        return {}
    found = {}
    for path in folder.rglob("*"):
        info = path.lstat()
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return found


def _run(case: Case, project: Project, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MOTIONFLOW_CACHE": str(project.cache),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        **case.env,
    }
    env.pop("MOTIONFLOW_DEBUG", None)
    return subprocess.run(
        [*CLI, *case.args],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,  # the guard: a hang fails the case instead of the suite
    )


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.slow
def test_hostile_case_is_refused_cleanly(project: Project, tmp_path: Path, name: str) -> None:
    case = CASES[name]
    if case.needs and not hasattr(os, case.needs):
        pytest.skip(f"needs os.{case.needs}, which this platform lacks")
    case.build(project.root)
    home = tmp_path / "home"
    home.mkdir()
    before = _files(project.root)
    proc = _run(case, project, home)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output, output
    assert "internal error" not in output, output  # the last resort is for bugs only
    for needle in case.needles:
        assert needle in output, f"{needle!r} not in:\n{output}"
    # only the cache's index (digests of inputs read) and lock files, never a result
    results = [name for name in _files(project.cache) if not name.startswith(("index/", "locks/"))]
    assert results == [], "something was written to the cache"
    assert not (project.root / "out").exists(), "something was written to out/"
    assert _files(project.root) == before, "a project file was written or changed"
    assert _files(home) == {}, "something was written to the home folder"


def test_the_corpus_script_writes_every_case(tmp_path: Path) -> None:
    """``python tests/hostile/corpus.py DEST`` writes one runnable folder per case."""
    script = Path(__file__).parent / "hostile" / "corpus.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "corpus")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    written = {path.parent.name for path in (tmp_path / "corpus").glob("*/case.json")}
    expected = {name for name, case in CASES.items() if not case.needs or hasattr(os, case.needs)}
    assert written == expected
