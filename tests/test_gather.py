"""``over: variants``: one instance gathers every variant's results, in matrix order."""

from __future__ import annotations

import pytest
from conftest import Project

STEPS = """\
def up(word):
    return word.upper()


def join(items, sep, first):
    return str(first) + "|" + sep.join(items)
"""

RECIPE = """\
version: 1
name: g
vars: {sep: "+"}
matrix: {word: [a, b, c]}
stages:
  up: {uses: python, with: {call: "gather_steps:up", word: "{{ word }}"}}
  first: {uses: python, with: {call: "gather_steps:up", word: "shared"}}
  all:
    uses: python
    over: variants
    with: {call: "gather_steps:join", items: "${stages.up.value}", sep: "{{ sep }}", first: "${stages.first.value}"}
outputs: [up, all]
"""


@pytest.mark.slow
def test_gathering_stage_runs_once_over_all_variants(project: Project) -> None:
    project.write("gather_steps.py", STEPS)
    recipe = project.write("g.yaml", RECIPE)
    first = project.run_json("g.yaml")
    assert first["_exit"] == 0, first["_stderr"]
    assert first["executed"] == 3 + 1 + 1
    # a gathered stage that is the same for every variant arrives as a list of one
    assert (project.out("g") / "all.txt").read_text() == "['SHARED']|A+B+C\n"
    plan = project.plan_json("g.yaml")
    gather = [i for i in plan["instances"] if i["stage"] == "all"]
    assert len(gather) == 1 and gather[0]["status"] == "cached"

    recipe.write_text(recipe.read_text().replace("[a, b, c]", "[a, b, d]"))
    plan = project.plan_json("g.yaml")
    reasons = {i["stage"] + ":" + ",".join(i["variants"]): i["reason"] for i in plan["instances"]}
    assert reasons["all:"] == "waits for up[d]"
    rerun = project.run_json("g.yaml")
    assert (rerun["executed"], rerun["cached"]) == (2, 3)
    assert (project.out("g") / "all.txt").read_text().endswith("|A+B+D\n")


def test_gathered_list_cannot_go_inside_a_string(project: Project) -> None:
    project.write("gather_steps.py", STEPS)
    project.write(
        "g.yaml",
        RECIPE.replace('items: "${stages.up.value}"', 'items: "all: ${stages.up.value}"'),
    )
    proc = project.cli("validate", "g.yaml")
    assert proc.returncode == 2
    assert "g.yaml:11:" in proc.stderr and "is a list (one per variant)" in proc.stderr


def test_takes_on_a_gathering_stage_is_refused(project: Project) -> None:
    project.write("gather_steps.py", STEPS)
    project.write(
        "g.yaml", RECIPE.replace("    over: variants\n", "    over: variants\n    takes: 2\n")
    )
    proc = project.cli("validate", "g.yaml")
    assert proc.returncode == 2 and "runs once over all variants" in proc.stderr
