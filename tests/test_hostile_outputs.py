"""Named outputs never replace what is not a regular file (issue 10, item 3).

``plan -o``, ``schema -o`` and ``cache export`` write through a temp file and a rename: onto a
regular file or nothing. A FIFO (standing in for ``/dev/full``, which only root could be hurt
by) is refused with exit 2 and left as it is; ``/dev/null`` and ``-`` work as users expect.
"""

from __future__ import annotations

import json
import os
import stat

import pytest
from conftest import SMALL_RECIPE, Project

FIFO = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


def _is_fifo(path: os.PathLike[str]) -> bool:
    return stat.S_ISFIFO(os.stat(path).st_mode)


@FIFO
@pytest.mark.parametrize(
    "args",
    [("plan", "small.yaml", "-o", "out.fifo"), ("schema", "-o", "out.fifo")],
)
def test_a_fifo_is_never_replaced_by_an_output(project: Project, args: tuple[str, ...]) -> None:
    project.write("small.yaml", SMALL_RECIPE)
    os.mkfifo(project.root / "out.fifo")
    proc = project.cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr
    assert _is_fifo(project.root / "out.fifo")  # still the FIFO, not a plain file


@FIFO
@pytest.mark.slow
def test_cache_export_never_replaces_a_fifo(project: Project) -> None:
    project.write("small.yaml", SMALL_RECIPE)
    assert project.run_json("small.yaml")["_exit"] == 0
    os.mkfifo(project.root / "team.tar.gz")
    proc = project.cli("cache", "export", "team.tar.gz", "--all")
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr
    assert _is_fifo(project.root / "team.tar.gz")


@pytest.mark.slow
def test_dev_null_and_stdout_work_as_expected(project: Project) -> None:
    project.write("small.yaml", SMALL_RECIPE)
    before = os.stat(os.devnull)
    for args in (
        ("plan", "small.yaml", "-o", os.devnull),
        ("schema", "-o", os.devnull),
    ):
        proc = project.cli(*args)
        assert proc.returncode == 0, proc.stderr
    assert project.run_json("small.yaml")["_exit"] == 0
    proc = project.cli("cache", "export", os.devnull, "--all")
    assert proc.returncode == 0, proc.stderr
    after = os.stat(os.devnull)
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino  # still the device
    piped = project.cli("plan", "small.yaml", "-o", "-")
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["digest"]  # the plan file itself, on stdout
    schema = project.cli("schema", "-o", "-")
    assert schema.returncode == 0 and json.loads(schema.stdout)
