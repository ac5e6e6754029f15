"""End-to-end runs through the real CLI: caching, reasons, failures, takes, budgets, outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, Project, repaint

from motionflow.media.probe import probe

DEMO = """\
version: 1
name: demo
provider: simulate
vars: {style: rooftop}
matrix:
  outfit: [red jacket, white hoodie]
inputs:
  hero: assets/hero.png
  dance: assets/dance.mp4
stages:
  prompt:
    uses: prompt
    with: {template: "A dancer in a {{ outfit }} on a {{ style }}."}
  take:
    uses: kling.motion_control
    takes: TAKES
    with:
      image: ${inputs.hero}
      video: ${inputs.dance}
      prompt: ${stages.prompt.text}
      duration: DURATION
      character_orientation: video
outputs: [prompt, take]
"""


def demo(project: Project, *, takes: int = 1, duration: int = 1, text: str = DEMO) -> Path:
    body = text.replace("TAKES", str(takes)).replace("DURATION", str(duration))
    return project.write("demo.yaml", body)


def by_stage(plan: dict[str, object], stage: str) -> list[dict[str, object]]:
    return [i for i in plan["instances"] if i["stage"] == stage]  # type: ignore[attr-defined,index]


@pytest.mark.slow
def test_quickstart_second_run_executes_and_submits_nothing(project: Project, files_under) -> None:
    shutil.copy(REPO / "recipes" / "quickstart.yaml", project.root / "quickstart.yaml")
    first = project.run_json("quickstart.yaml")
    assert first["_exit"] == 0, first["_stderr"]
    # still, clip, two prompts, two takes, the comparison sheet
    assert (first["executed"], first["cached"], first["jobs_submitted"]) == (7, 0, 2)
    assert first["estimated_usd"] == 1.12
    video = project.out("quickstart") / "red-bomber-jacket" / "take.mp4"
    info = probe(video)
    assert (info.width, info.height) == (1280, 720)
    assert abs(info.duration - 4.0) < 0.1
    assert info.has_audio
    sheet = probe(project.out("quickstart") / "sheet.mp4")
    assert sheet.height == 240 and abs(sheet.duration - 4.0) < 0.1
    receipt = json.loads((video.parent / "take.receipt.json").read_text())
    assert receipt["generation"]["billed_seconds"] == 4
    assert receipt["parameters"]["prompt"].startswith("The character wears a red bomber jacket")
    assert "neon rooftop at night" in receipt["parameters"]["prompt"]
    before = files_under(project.out("quickstart"))

    second = project.cli("run", "quickstart.yaml")
    assert second.returncode == 0, second.stderr
    assert "Nothing to do" in second.stdout and "0 jobs submitted" in second.stdout
    again = project.run_json("quickstart.yaml", "--recheck")  # the full plan, not the stamp
    assert (again["executed"], again["jobs_submitted"], again["cached"]) == (0, 0, 7)
    assert files_under(project.out("quickstart")) == before


@pytest.mark.slow
def test_editing_one_matrix_value_reruns_only_that_variant(project: Project) -> None:
    recipe = demo(project)
    assert project.run_json("demo.yaml")["jobs_submitted"] == 2
    recipe.write_text(recipe.read_text().replace("white hoodie", "black hoodie"))
    plan = project.plan_json("demo.yaml")
    status = {(i["stage"], i["variants"][0]): (i["status"], i["reason"]) for i in plan["instances"]}
    assert status[("take", "red-jacket")] == ("cached", "unchanged")
    assert status[("take", "black-hoodie")] == ("run", "new")
    assert plan["estimated_usd"] == 0.14
    rerun = project.run_json("demo.yaml")
    assert (rerun["executed"], rerun["jobs_submitted"], rerun["cached"]) == (2, 1, 2)


@pytest.mark.slow
def test_plan_says_which_key_component_changed(project: Project) -> None:
    recipe = demo(project)
    project.run_json("demo.yaml")
    plan = project.plan_json("demo.yaml", "--var", "style=beach")
    assert {i["reason"] for i in by_stage(plan, "prompt")} == {"rendered prompt changed"}
    # the takes wait for the new prompt text, which planning already knows: same reason
    assert {i["reason"] for i in by_stage(plan, "take")} == {"rendered prompt changed"}
    recipe.write_text(recipe.read_text().replace("duration: 1", "duration: 2"))
    plan = project.plan_json("demo.yaml")
    assert {i["status"] for i in by_stage(plan, "prompt")} == {"cached"}
    assert {i["reason"] for i in by_stage(plan, "take")} == {"duration: 1.0 -> 2.0"}
    assert plan["estimated_usd"] == 0.56


@pytest.mark.slow
def test_takes_are_cached_one_by_one(project: Project) -> None:
    demo(project, takes=2)
    first = project.run_json("demo.yaml")
    assert first["jobs_submitted"] == 4
    folder = project.out("demo") / "red-jacket"
    assert (folder / "take-1.mp4").is_file() and (folder / "take-2.mp4").is_file()
    assert (folder / "take-1.mp4").read_bytes() != (folder / "take-2.mp4").read_bytes()
    demo(project, takes=3)
    more = project.run_json("demo.yaml")
    assert (more["jobs_submitted"], more["executed"]) == (2, 2)


def test_budget_refuses_before_anything_runs(project: Project) -> None:
    demo(project)
    proc = project.cli("run", "demo.yaml", "--max-usd", "0.20")
    assert proc.returncode == 3, proc.stderr
    assert "over the budget of $0.20" in proc.stderr and "$0.28" in proc.stderr
    assert not project.out("demo").exists()
    assert not (project.cache / "blobs").exists() or not any((project.cache / "blobs").iterdir())


def test_recipe_budget_is_used_when_no_flag(project: Project) -> None:
    recipe = demo(project)
    recipe.write_text(
        recipe.read_text().replace(
            "provider: simulate", "provider: simulate\nbudget: {max_usd: 0.1}"
        )
    )
    assert project.cli("run", "demo.yaml").returncode == 3


PIPELINE = """\
version: 1
name: pipe
matrix:
  word: [alpha, beta, gamma]
stages:
  shared:
    uses: python
    with: {call: "steps:constant"}
  shout:
    uses: python
    with: {call: "steps:shout", text: "{{ word }}", base: "${stages.shared.value}"}
  length:
    uses: python
    with: {call: "steps:length", text: "${stages.shout.value}"}
outputs: [shout, length]
"""

STEPS = """\
def constant():
    return "base"


def shout(text, base):
    if text == "beta":
        raise RuntimeError("beta is not allowed")
    return base + ":" + text.upper()


def length(text):
    return len(text)
"""


@pytest.mark.slow
def test_failure_stops_dependents_not_siblings(project: Project) -> None:
    project.write("steps.py", STEPS)
    project.write("pipe.yaml", PIPELINE)
    result = project.run_json("pipe.yaml")
    assert result["_exit"] == 1
    assert result["failed"] == 1 and result["blocked"] == 1
    # shared ran once for three variants; alpha and gamma finished both stages
    assert result["executed"] == 1 + 2 + 2
    assert [f["instance"] for f in result["failures"]] == ["shout[beta]"]
    assert "beta is not allowed" in result["failures"][0]["error"]
    assert (project.out("pipe") / "gamma" / "length.json").read_text().strip() == "10"
    assert not (project.out("pipe") / "beta").exists()
    assert not any((project.cache / "tmp").iterdir())  # nothing partial left behind

    project.write("steps.py", STEPS.replace('if text == "beta"', 'if text == "delta"'))
    plan = project.plan_json("pipe.yaml")
    reasons = {(i["stage"], i["variants"][0]): i["reason"] for i in plan["instances"]}
    assert reasons[("shout", "alpha")] == "function source changed"
    assert reasons[("shout", "beta")] == "new"  # it never finished, so there is nothing to compare
    rerun = project.run_json("pipe.yaml")
    assert rerun["_exit"] == 0
    # the edited function re-runs everywhere; 'length' sees unchanged text for alpha/gamma
    assert (rerun["executed"], rerun["failed"]) == (3 + 1, 0)


@pytest.mark.slow
def test_out_files_are_restored_without_running(project: Project) -> None:
    demo(project)
    project.run_json("demo.yaml")
    video = project.out("demo") / "white-hoodie" / "take.mp4"
    original = video.read_bytes()
    video.unlink()
    again = project.run_json("demo.yaml")
    assert (again["executed"], again["jobs_submitted"]) == (0, 0)
    assert video.read_bytes() == original


@pytest.mark.slow
def test_changed_input_is_noticed(project: Project) -> None:
    demo(project)
    project.run_json("demo.yaml")
    hero = project.root / "assets" / "hero.png"
    repaint(hero)
    plan = project.plan_json("demo.yaml")
    assert {i["reason"] for i in by_stage(plan, "take")} == {
        "input 'image' changed (content digest)"
    }
    assert project.run_json("demo.yaml")["jobs_submitted"] == 2


@pytest.mark.slow
def test_plan_and_run_json_fields(project: Project) -> None:
    demo(project)
    plan = project.plan_json("demo.yaml")
    assert {"to_run", "cached", "estimated_usd", "saved_usd", "instances"} <= set(plan)
    result = project.run_json("demo.yaml")
    for field in (
        "executed",
        "cached",
        "failed",
        "jobs_submitted",
        "jobs_resumed",
        "estimated_usd",
        "outputs",
    ):
        assert field in result
    assert all(Path(p).is_file() for p in result["outputs"])
    assert result["jobs_resumed"] == 0


def test_dag_formats(project: Project) -> None:
    demo(project)
    text = project.cli("dag", "demo.yaml")
    assert text.returncode == 0 and "take (kling.motion_control) x2" in text.stdout
    mermaid = project.cli("dag", "demo.yaml", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR") and "prompt --> take" in mermaid
    dot = project.cli("dag", "demo.yaml", "--format", "dot").stdout
    assert dot.startswith("digraph") and '"inputs.hero" -> "take";' in dot


def test_schema_describes_stage_parameters(project: Project) -> None:
    proc = project.cli("schema")
    schema = json.loads(proc.stdout)
    kling = schema["$defs"]["Params_kling_motion_control"]
    mode = kling["properties"]["mode"]
    assert mode["anyOf"][0]["enum"] == ["std", "pro"]
    assert mode["anyOf"][1]["type"] == "string"  # "{{ mode }}" is valid too
    assert "stages" in schema["required"] and "version" in schema["required"]


@pytest.mark.slow
def test_out_mirrors_the_recipe(project: Project) -> None:
    """Files of takes and variants no longer in the recipe leave out/ (the cache keeps them)."""
    recipe = demo(project, takes=1)
    project.run_json("demo.yaml")
    folder = project.out("demo") / "red-jacket"
    assert (folder / "take.mp4").is_file()
    demo(project, takes=2)
    assert project.run_json("demo.yaml")["jobs_submitted"] == 2  # take 1 was reused
    assert sorted(p.name for p in folder.glob("take*.mp4")) == ["take-1.mp4", "take-2.mp4"]
    recipe.write_text(recipe.read_text().replace("white hoodie", "black hoodie"))
    project.run_json("demo.yaml")
    assert not (project.out("demo") / "white-hoodie").exists()
    assert (project.out("demo") / "black-hoodie" / "take-2.mp4").is_file()


def test_plan_table_shows_instance_labels_verbatim(project: Project) -> None:
    """Labels like shout[alpha] are text, not terminal markup."""
    project.write("steps.py", STEPS)
    project.write("pipe.yaml", PIPELINE)
    proc = project.cli("plan", "pipe.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "waits for shout[alpha]" in " ".join(proc.stdout.split())
