"""The no-op fast path answers only when nothing it depends on changed."""

from __future__ import annotations

import os

import pytest
from conftest import Project

STEPS = "def echo(text):\n    return text\n\n\ndef shout(text):\n    return text.upper()\n"

RECIPE = """\
version: 1
name: stamped
vars: {greeting: hello}
inputs: {notes: notes.txt}
stages:
  say: {uses: python, with: {call: "stamped_steps:echo", text: "{{ greeting }}"}}
  copy: {uses: python, with: {call: "stamped_steps:shout", text: "${stages.say.value}"}}
outputs: [copy]
"""


def setup(project: Project) -> None:
    project.write("stamped_steps.py", STEPS)
    project.write("notes.txt", "notes")
    project.write("stamped.yaml", RECIPE)


def test_stamp_answers_an_unchanged_rerun(project: Project) -> None:
    setup(project)
    assert project.run_json("stamped.yaml")["executed"] == 2
    assert list((project.cache / "stamps").glob("*.json"))
    again = project.run_json("stamped.yaml")
    assert (again["executed"], again["cached"], again["_exit"]) == (0, 2, 0)


@pytest.mark.slow
def test_changes_the_stamp_must_notice(project: Project) -> None:
    setup(project)
    project.run_json("stamped.yaml")
    # a --var changes the rendered text: the full plan runs and re-executes
    assert project.run_json("stamped.yaml", "--var", "greeting=hi")["executed"] == 2
    # touching an input without changing it: full plan, nothing runs
    notes = project.root / "notes.txt"
    os.utime(notes, ns=(notes.stat().st_atime_ns, notes.stat().st_mtime_ns + 10**9))
    assert project.run_json("stamped.yaml")["executed"] == 0
    # editing the function: its stage re-runs
    project.write("stamped_steps.py", STEPS.replace("return text\n", "return text + '!'\n"))
    result = project.run_json("stamped.yaml")
    assert result["executed"] == 2
    assert (project.out("stamped") / "default" / "copy.txt").read_text() == "HELLO!\n"


def test_no_stamp_after_a_failure(project: Project) -> None:
    setup(project)
    project.write("stamped_steps.py", STEPS.replace("return text\n", "raise ValueError('no')\n"))
    assert project.run_json("stamped.yaml")["_exit"] == 1
    assert project.run_json("stamped.yaml")["_exit"] == 1  # tried again, not "nothing to do"
