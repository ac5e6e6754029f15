"""Ctrl-C during a run keeps nothing partial, and the next run finishes the work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import Project

STEPS = """\
import time
from pathlib import Path


def slow(word, outdir):
    marker = Path(__file__).with_name("started-" + word)
    marker.write_text("x")
    time.sleep(30 if word == "b" and not Path(__file__).with_name("fast").exists() else 0)
    out = outdir / (word + ".txt")
    out.write_text(word)
    return out
"""

RECIPE = """\
version: 1
name: intr
matrix: {word: [a, b]}
stages:
  make: {uses: python, with: {call: "intr_steps:slow", word: "{{ word }}"}}
outputs: [make]
"""


@pytest.mark.slow
def test_ctrl_c_keeps_nothing_partial(project: Project) -> None:
    project.write("intr_steps.py", STEPS)
    project.write("intr.yaml", RECIPE)
    env = {**os.environ, "MOTIONFLOW_CACHE": str(project.cache)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from motionflow.cli import main; main()", "run", "intr.yaml"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (project.root / "started-b").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "detached" in err and "Traceback" not in err
    assert not list((project.cache / "tmp").iterdir())  # no work folder or partial blob
    assert not (project.out("intr") / "b").exists()

    (project.root / "fast").write_text("")
    result = project.run_json("intr.yaml")
    assert result["_exit"] == 0
    assert (project.out("intr") / "b" / "make.txt").read_text() == "b"
    assert result["executed"] + result["cached"] == 2
