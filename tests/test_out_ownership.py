"""Two recipes with the same ``name:`` would share ``out/<name>/``: the second is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY_RECIPE, Project

Snapshot = Callable[[Path], dict[str, tuple[int, int]]]


@pytest.mark.slow
def test_a_second_recipe_with_the_same_name_is_refused(
    project: Project, files_under: Snapshot
) -> None:
    project.write("a.yaml", TINY_RECIPE)
    project.write("sub/b.yaml", TINY_RECIPE.replace("assets/", "../assets/"))
    first = project.run_json("a.yaml")
    assert (first["_exit"], first["jobs_submitted"]) == (0, 1), first["_stderr"]
    out = project.out("tiny")
    assert json.loads((out / "manifest.json").read_text())["recipe"] == "a.yaml"
    before = files_under(out)
    for command in ("plan", "run", "why", "impact", "report", "validate"):
        proc = project.cli(command, "sub/b.yaml")
        assert proc.returncode == 2, (command, proc.stderr)
        message = " ".join(proc.stderr.split())
        assert "'sub/b.yaml'" in message and "a.yaml" in message, message
        assert "same name 'tiny'" in message
        assert "`name:`" in message and "delete" in message
    assert files_under(out) == before
    assert project.cli("run", "a.yaml").returncode == 0  # the owner is not affected


@pytest.mark.slow
def test_the_fix_works_rename_or_delete_the_folder(project: Project) -> None:
    project.write("a.yaml", TINY_RECIPE)
    b = project.write("b.yaml", TINY_RECIPE)
    assert project.run_json("a.yaml")["_exit"] == 0
    assert project.cli("plan", "b.yaml").returncode == 2
    b.write_text(b.read_text().replace("name: tiny", "name: tiny-2"))
    renamed = project.run_json("b.yaml")
    assert (renamed["_exit"], renamed["jobs_submitted"]) == (0, 0), renamed["_stderr"]
    assert (project.out("tiny-2") / "default" / "take.mp4").is_file()


@pytest.mark.slow
def test_a_moved_or_renamed_recipe_takes_its_folder_over(project: Project) -> None:
    a = project.write("a.yaml", TINY_RECIPE)
    assert project.run_json("a.yaml")["_exit"] == 0
    a.rename(project.root / "c.yaml")
    moved = project.run_json("c.yaml")
    assert (moved["_exit"], moved["jobs_submitted"]) == (0, 0), moved["_stderr"]
    manifest = json.loads((project.out("tiny") / "manifest.json").read_text())
    assert manifest["recipe"] == "c.yaml"


@pytest.mark.slow
def test_an_owner_that_changed_its_name_frees_the_folder(project: Project) -> None:
    a = project.write("a.yaml", TINY_RECIPE)
    project.write("b.yaml", TINY_RECIPE)
    assert project.run_json("a.yaml")["_exit"] == 0
    a.write_text(a.read_text().replace("name: tiny", "name: other"))
    assert project.cli("plan", "b.yaml").returncode == 0


@pytest.mark.parametrize("old", [None, "gone.yaml"])
@pytest.mark.slow
def test_a_manifest_without_a_live_owner_is_adopted(project: Project, old: str | None) -> None:
    project.write("a.yaml", TINY_RECIPE)
    out = project.out("tiny")
    out.mkdir(parents=True)
    body: dict[str, object] = {"version": 1, "entries": {}}
    if old:
        body["recipe"] = old
    (out / "manifest.json").write_text(json.dumps(body))
    ran = project.run_json("a.yaml")
    assert ran["_exit"] == 0, ran["_stderr"]
    assert json.loads((out / "manifest.json").read_text())["recipe"] == "a.yaml"
