"""Run targets: ``--only AXIS=VALUE`` and ``--stage NAME`` try one variant before paying for all."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Project, clone_into, new_project

from motionflow.manifest import Manifest

SWEEP = """\
version: 1
name: sweep
provider: simulate
matrix:
  outfit: [red jacket, white hoodie]
  setting: [rooftop, beach]
  exclude: [{outfit: white hoodie, setting: beach}]
inputs:
  hero: assets/hero.png
  dance: assets/dance.mp4
stages:
  prompt:
    uses: prompt
    with: {template: "A dancer in a {{ outfit }} on a {{ setting }}."}
  take:
    uses: kling.motion_control
    with:
      image: ${inputs.hero}
      video: ${inputs.dance}
      prompt: ${stages.prompt.text}
      duration: 1
      character_orientation: video
outputs: [prompt, take]
"""

Snapshot = Callable[[Path], dict[str, tuple[int, int]]]


def sweep(project: Project, text: str = SWEEP) -> Path:
    return project.write("sweep.yaml", text)


@pytest.fixture(scope="module")
def _swept_once(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The whole sweep, run once for the module: 3 variants, 3 paid (simulated) takes."""
    source = new_project(tmp_path_factory.mktemp("swept"))
    sweep(source)
    first = source.run_json("sweep.yaml")
    assert (first["_exit"], first["jobs_submitted"]) == (0, 3), first["_stderr"]
    return source


@pytest.fixture
def swept(project: Project, _swept_once: Project) -> Project:
    """A project where the whole sweep ran (a copy of the module's run)."""
    return clone_into(_swept_once, project)


def variants_of(plan: dict[str, object], stage: str) -> list[str]:
    return sorted(
        v
        for i in plan["instances"]  # type: ignore[attr-defined]
        if i["stage"] == stage
        for v in i["variants"]
    )


@pytest.mark.slow
def test_only_plans_and_prices_the_matching_variants(project: Project) -> None:
    sweep(project)
    full = project.plan_json("sweep.yaml")
    assert len(variants_of(full, "take")) == 3 and full["estimated_usd"] == 0.42
    one = project.plan_json("sweep.yaml", "--only", "outfit=red jacket", "--only", "setting=beach")
    assert variants_of(one, "take") == ["red-jacket_beach"]
    assert one["estimated_usd"] == 0.14
    assert one["targets"] == {"only": ["outfit=red jacket", "setting=beach"], "stage": []}
    # a slug (as in variant ids) names a value too; an axis given twice matches either value
    both = project.plan_json("sweep.yaml", "--only", "setting=rooftop")
    assert variants_of(both, "take") == ["red-jacket_rooftop", "white-hoodie_rooftop"]
    either = project.plan_json(
        "sweep.yaml", "--only", "outfit=red-jacket", "--only", "outfit=white-hoodie"
    )
    assert len(variants_of(either, "take")) == 3
    text = project.cli("plan", "sweep.yaml", "--only", "setting=beach")
    assert text.returncode == 0, text.stderr
    assert "1 of 3 variant(s)" in text.stdout and "$0.14" in text.stdout


@pytest.mark.slow
def test_stage_selects_that_stage_and_what_it_needs(project: Project) -> None:
    sweep(project)
    prompts = project.plan_json("sweep.yaml", "--stage", "prompt")
    assert {i["stage"] for i in prompts["instances"]} == {"prompt"}
    assert prompts["estimated_usd"] == 0.0
    takes = project.plan_json("sweep.yaml", "--stage", "take", "--only", "setting=beach")
    assert {(i["stage"], i["variants"][0]) for i in takes["instances"]} == {
        ("prompt", "red-jacket_beach"),
        ("take", "red-jacket_beach"),
    }
    ran = project.run_json("sweep.yaml", "--stage", "prompt")
    assert ran["_exit"] == 0, ran["_stderr"]
    assert (ran["executed"], ran["jobs_submitted"]) == (3, 0)
    assert not list(project.out("sweep").rglob("take.mp4"))


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--only", "outfti=red jacket"], ["no matrix axis 'outfti'", "'outfit'", "'setting'"]),
        (["--only", "outfit=red jaket"], ["did you mean 'red jacket'", "'white hoodie'"]),
        (["--only", "outfit"], ["AXIS=VALUE"]),
        (["--stage", "tkae"], ["no stage 'tkae'", "did you mean 'take'", "prompt, take"]),
        (
            ["--only", "outfit=white hoodie", "--only", "setting=beach"],
            ["no variant", "red-jacket_rooftop"],
        ),
    ],
)
@pytest.mark.parametrize("command", ["plan", "run", "why", "impact", "report"])
def test_unknown_targets_exit_2_with_a_hint(
    project: Project, command: str, flags: list[str], fragments: list[str]
) -> None:
    sweep(project)
    proc = project.cli(command, "sweep.yaml", *flags)
    assert proc.returncode == 2, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not project.out("sweep").exists()


@pytest.mark.slow
def test_a_targeted_run_pays_for_its_variants_and_leaves_the_others(
    swept: Project, files_under: Snapshot
) -> None:
    project = swept
    recipe = project.root / "sweep.yaml"
    out = project.out("sweep")
    others = {
        name: files_under(out / name) for name in ("red-jacket_beach", "white-hoodie_rooftop")
    }
    recipe.write_text(recipe.read_text().replace("A dancer", "A slow dancer"))
    tried = project.run_json(
        "sweep.yaml", "--only", "outfit=red jacket", "--only", "setting=rooftop"
    )
    assert tried["_exit"] == 0, tried["_stderr"]
    assert (tried["jobs_submitted"], tried["executed"]) == (1, 2)
    for name, files in others.items():  # stale now, but not this run's to touch
        assert files_under(out / name) == files
    receipt = (out / "red-jacket_rooftop" / "prompt.txt").read_text()
    assert receipt.startswith("A slow dancer")
    entries = Manifest.load(out).entries
    assert {"take/red-jacket_beach", "take/white-hoodie_rooftop"} <= set(entries)

    again = project.cli(
        "run", "sweep.yaml", "--only", "outfit=red jacket", "--only", "setting=rooftop"
    )
    assert again.returncode == 0 and "Nothing to do" in again.stdout
    # the targeted run's stamp does not vouch for the whole recipe: the rest is paid now
    rest = project.run_json("sweep.yaml")
    assert rest["_exit"] == 0, rest["_stderr"]
    assert (rest["jobs_submitted"], rest["cached"]) == (2, 2)
    done = project.cli("run", "sweep.yaml")
    assert "Nothing to do" in done.stdout and "0 jobs submitted" in done.stdout


@pytest.mark.slow
def test_a_full_run_after_a_targeted_one_is_not_a_no_op(project: Project) -> None:
    sweep(project)
    tried = project.run_json("sweep.yaml", "--only", "setting=beach")
    assert tried["jobs_submitted"] == 1
    assert project.cli("run", "sweep.yaml", "--only", "setting=beach").stdout.startswith(
        "Nothing to do"
    )
    full = project.run_json("sweep.yaml")
    assert (full["jobs_submitted"], full["cached"]) == (2, 2)


@pytest.mark.slow
def test_a_targeted_run_removes_stale_outputs_of_its_own_variants_only(
    swept: Project,
) -> None:
    project = swept
    recipe = project.root / "sweep.yaml"
    out = project.out("sweep")
    # white hoodie leaves the matrix: its files are stale, but only a full run removes them
    recipe.write_text(recipe.read_text().replace("[red jacket, white hoodie]", "[red jacket]"))
    tried = project.run_json("sweep.yaml", "--only", "setting=beach")
    assert tried["_exit"] == 0, tried["_stderr"]
    assert (out / "white-hoodie_rooftop" / "take.mp4").is_file()
    full = project.run_json("sweep.yaml")
    assert full["jobs_submitted"] == 0
    assert not (out / "white-hoodie_rooftop" / "take.mp4").exists()


@pytest.mark.slow
def test_why_impact_and_report_take_targets(swept: Project) -> None:
    project = swept
    why = project.cli("why", "sweep.yaml", "--only", "setting=beach", "--stage", "take")
    assert why.returncode == 0, why.stderr
    assert "red-jacket_beach" in why.stdout and "rooftop" not in why.stdout
    impact = project.cli("impact", "sweep.yaml", "--only", "setting=beach", "--var", "x=1")
    assert impact.returncode == 2  # no var x: the usual check still runs
    report = project.cli("report", "sweep.yaml", "--only", "setting=beach")
    assert report.returncode == 0, report.stderr
    assert "1 video(s)" in report.stdout


@pytest.mark.slow
def test_run_plan_command_repeats_the_targets(project: Project) -> None:
    sweep(project)
    proc = project.cli("plan", "sweep.yaml", "--only", "setting=beach", "-o", "p.json")
    assert proc.returncode == 0, proc.stderr
    assert "--only setting=beach --plan p.json" in proc.stdout
    ran = project.run_json("sweep.yaml", "--only", "setting=beach", "--plan", "p.json")
    assert (ran["_exit"], ran["jobs_submitted"]) == (0, 1), ran["_stderr"]


def test_manifest_limit_to_keeps_entries_outside_the_selection(tmp_path: Path) -> None:
    out = tmp_path / "out" / "r"
    (out / "a").mkdir(parents=True)
    (out / "b").mkdir()
    files = {}
    for name in ("a", "b"):
        path = out / name / "take.mp4"
        path.write_bytes(b"x")
        st = path.stat()
        files[name] = {f"{name}/take.mp4": [st.st_size, st.st_mtime_ns]}
    manifest = Manifest(out / "manifest.json", {})
    for name in ("a", "b"):
        manifest.record(f"take/{name}", "k" + name, {}, files[name])
    manifest.limit_to({"take"}, {"a"})
    assert manifest.keep_only(set()) == [out / "a" / "take.mp4"]
    assert (out / "b" / "take.mp4").is_file() and "take/b" in manifest.entries
