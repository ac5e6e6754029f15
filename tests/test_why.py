"""``motionflow why`` and ``motionflow impact``: what changed since the last run, and its price."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SMALL_RECIPE, Project, clone_into, new_project, repaint

RECIPE = SMALL_RECIPE


@pytest.fixture(scope="module")
def _ran_once(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The small recipe, run once for the module."""
    source = new_project(tmp_path_factory.mktemp("ran"))
    source.write("small.yaml", RECIPE)
    result = source.run_json("small.yaml")
    assert (result["_exit"], result["jobs_submitted"]) == (0, 2), result["_stderr"]
    return source


@pytest.fixture
def ran(project: Project, _ran_once: Project) -> Project:
    """A project where the small recipe ran (a copy of the module's run)."""
    return clone_into(_ran_once, project)


def why(project: Project, *args: str) -> str:
    proc = project.cli("why", "small.yaml", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def repaint_hero(project: Project) -> None:
    hero = project.root / "assets" / "hero.png"
    repaint(hero)


@pytest.mark.slow
def test_unchanged_instances_say_so(ran: Project) -> None:
    project = ran
    out = why(project)
    assert out.count("unchanged (cached)") == 1 and "4 instances: " in out  # said once, for all


@pytest.mark.slow
def test_prompt_edit_shows_a_text_diff(ran: Project) -> None:
    project = ran
    project.write("small.yaml", RECIPE.replace("on a rooftop", "on a beach"))
    out = why(project, "take", "--variant", "red-jacket")
    assert "take[red-jacket]" in out and "white-hoodie" not in out
    assert "red jacket on a [-rooftop.-]{+beach.+}" in out  # a word diff, not lines
    data = json.loads(project.cli("why", "small.yaml", "take", "--json").stdout)
    (change,) = data["instances"][0]["changes"]
    assert change["component"] == "prompt" and change["new"].endswith("on a beach.")


@pytest.mark.slow
def test_param_edit_shows_old_and_new(ran: Project) -> None:
    project = ran
    project.write("small.yaml", RECIPE.replace("duration: 3", "duration: 4"))
    out = why(project, "take")
    assert out.count("duration: 3 -> 4") == 1 and "2 instances: take[" in out  # once for both
    assert "prompt[" not in out  # filtered to the stage


@pytest.mark.slow
def test_input_change_shows_the_digests(ran: Project) -> None:
    project = ran
    old = json.loads(project.cli("why", "small.yaml", "take", "--json").stdout)
    old_digest = old["instances"][0]["components"]["params"]["image"]["$file"]
    repaint_hero(project)
    out = why(project, "take", "--variant", "white-hoodie")
    assert f"input 'image': {old_digest[:15]}… -> blake3:" in out
    assert "video" not in out.split("input 'image'")[1]  # only the image changed


@pytest.mark.slow
def test_unknown_stage_or_variant_is_a_usage_error(project: Project) -> None:
    project.write("small.yaml", RECIPE)
    proc = project.cli("why", "small.yaml", "--variant", "red-jackt")
    assert proc.returncode == 2 and "did you mean 'red-jacket'" in proc.stderr
    assert project.cli("why", "small.yaml", "nope").returncode == 2
    proc = project.cli("why", "small.yaml", "tkae")
    assert proc.returncode == 2 and "did you mean 'take'?" in proc.stderr
    assert "its stages: prompt, take" in proc.stderr


@pytest.mark.slow
def test_impact_prices_an_edit_and_writes_nothing(
    ran: Project, files_under: Callable[[Path], dict[str, tuple[int, int]]]
) -> None:
    project = ran
    project.write("small.yaml", RECIPE.replace("on a rooftop", "on a beach"))
    # diskcache rewrites its settings rows whenever the index is opened (plan does the same):
    # everything else, results, blobs, journal, stamps and out/, must not move
    cache_before = {k: v for k, v in files_under(project.cache).items() if "index" not in k}
    out_before = files_under(project.out("small"))
    proc = project.cli("impact", "small.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["to_run"], data["generations"], data["estimated_usd"]) == (4, 2, 0.84)
    (group,) = data["groups"]
    assert group["reason"] == "rendered prompt changed" and group["count"] == 4
    text = project.cli("impact", "small.yaml").stdout
    assert "editing the prompt" in text and "re-runs 2 generations" in text and "$0.84" in text
    assert {k: v for k, v in files_under(project.cache).items() if "index" not in k} == (
        cache_before
    )
    assert files_under(project.out("small")) == out_before
    # and a run afterwards does exactly what impact said
    assert project.run_json("small.yaml")["jobs_submitted"] == 2


@pytest.mark.slow
def test_impact_of_nothing(ran: Project) -> None:
    project = ran
    out = project.cli("impact", "small.yaml").stdout
    assert "No impact" in out and "$0.00" in out


@pytest.mark.slow
def test_impact_groups_what_waits_by_stage_not_by_variant(project: Project) -> None:
    recipe = RECIPE.replace(
        "outputs:",
        "  thumb:\n    uses: video.thumbnail\n    with:\n      src: ${stages.take.video}\noutputs:",
    )
    project.write("small.yaml", recipe)
    assert project.run_json("small.yaml")["_exit"] == 0
    project.write("small.yaml", recipe.replace("on a rooftop", "on a beach"))
    data = json.loads(project.cli("impact", "small.yaml", "--json").stdout)
    causes = {g["cause"]: g["count"] for g in data["groups"]}
    assert causes["downstream of what re-runs (waits for take)"] == 2
    assert len(data["groups"]) == 2
