"""The money path (issue "money path", items 11-13), through the CLI.

11. A reviewed plan file holds the run to the ``--var`` flags, the rendered prompts and the
    parameters of every paid generation (even while its key is unknown), and the set of paid
    generations; generations whose media are made during the run are checked again before
    they are submitted.
12. Every amount of dollars that enters (``--max-usd``, the price table, ``budget.max_usd``,
    a plan file) is a finite number >= 0, or nothing runs (exit 2).
13. ``plan`` and ``impact`` show the budget and refuse (exit 3) a plan whose exact cost is
    over it, as ``run`` would; an upper bound over it only warns, as in ``run``.

Paid generations go to the fake EmpirioLabs server on loopback, which counts the submits.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import blake3
import pytest
from conftest import SMALL_RECIPE, Project
from service import Service

from motionflow.keys import canonical_json

VARS_RECIPE = SMALL_RECIPE.replace(
    "provider: simulate\n", "provider: simulate\nvars: {place: rooftop}\n"
).replace("on a rooftop.", "on a {{ place }}.")

#: The generation's video is made by ``clip``: its key is unknown until ``clip`` has run.
CLIPPED = """\
version: 1
name: clipped
provider: {provider}
publish: {publish}
matrix:
  outfit: [red jacket]
inputs:
  hero: assets/hero.png
  dance: assets/dance.mp4
stages:
  clip: {{uses: video.prepare, with: {{src: "${{inputs.dance}}", duration: 3}}}}
  take:
    uses: kling.motion_control
    with:
      image: ${{inputs.hero}}
      video: ${{stages.clip.video}}
      prompt: "The character wears a {{{{ outfit }}}} and dances on a rooftop."
      character_orientation: video
      duration: 3
outputs: [take]
"""


def clipped(service: Service) -> str:
    publish = f"{{kind: static, dir: published, base_url: '{service.static.url}'}}"
    (service.root / "clipped.yaml").write_text(
        CLIPPED.format(provider="empiriolabs", publish=publish), encoding="utf-8"
    )
    return "clipped.yaml"


def plan_file(cli: Any, recipe: str, *flags: str) -> tuple[str, list[str]]:
    """``plan RECIPE FLAGS -o plan.json``: its output, and the run command it prints."""
    proc = cli("plan", recipe, *flags, "-o", "plan.json")
    assert proc.returncode == 0, proc.stderr
    command = proc.stdout.rsplit("After review: ", 1)[1].strip()
    return proc.stdout, shlex.split(command)


def restamp(path: Path, edit: Any) -> None:
    """Change a plan file and give it a matching digest (a plan file not written by `plan`)."""
    document = json.loads(path.read_text())
    edit(document)
    body = {k: v for k, v in document.items() if k != "digest"}
    document["digest"] = "blake3:" + blake3.blake3(canonical_json(body).encode()).hexdigest()
    path.write_text(json.dumps(document))


def takes_made(project: Project) -> int:
    return len(list(project.out("small").rglob("take.mp4")))


# -- 11. a reviewed plan holds the run to what was reviewed ----------------------------------


@pytest.mark.slow
def test_plan_prints_a_run_command_with_its_vars_and_run_refuses_other_vars(
    project: Project,
) -> None:
    project.write("small.yaml", VARS_RECIPE)
    assert project.run_json("small.yaml")["_exit"] == 0  # the recipe's own vars: all cached
    _, command = plan_file(project.cli, "small.yaml", "--var", "place=neon beach")
    assert command == [
        "motionflow", "run", "small.yaml", "--var", "place=neon beach", "--plan", "plan.json",
    ]  # fmt: skip
    document = json.loads((project.root / "plan.json").read_text())
    assert document["recipe"]["vars"] == {"place": "neon beach"}

    without = project.cli("run", "small.yaml", "--plan", "plan.json")
    assert without.returncode == 2, without.stdout
    assert "Nothing to do" not in without.stdout
    assert "--var place='neon beach' was given to the plan, not to this run" in without.stderr
    other = project.cli("run", "small.yaml", "--var", "place=moon", "--plan", "plan.json")
    assert other.returncode == 2
    assert "--var place: 'neon beach' in the plan, 'moon' now" in other.stderr
    assert "Nothing was run or spent" in other.stderr
    assert takes_made(project) == 2  # only the first run's

    reviewed = project.run_json(*command[2:])  # the printed command, as a user pastes it
    assert (reviewed["_exit"], reviewed["executed"], reviewed["jobs_submitted"]) == (0, 4, 2)


@pytest.mark.slow
def test_the_printed_command_keeps_the_flags_the_plan_depended_on(project: Project) -> None:
    project.write("small.yaml", VARS_RECIPE)
    cache = str(project.root.parent / "other cache")
    _, command = plan_file(
        project.cli, "small.yaml", "--cache", cache, "--max-usd", "2.5", "--allow-outside-project"
    )
    assert command == [
        "motionflow", "run", "small.yaml", "--allow-outside-project", "--cache", cache,
        "--max-usd", "2.5", "--plan", "plan.json",
    ]  # fmt: skip
    result = project.run_json(*command[2:])
    assert (result["_exit"], result["jobs_submitted"]) == (0, 2)
    assert Path(cache, "blobs").is_dir()  # it ran against the cache the plan was made with


@pytest.mark.slow
def test_a_prompt_edited_after_review_is_refused_while_its_key_is_unknown(
    service: Service,
) -> None:
    recipe = clipped(service)
    plan_file(service.cli, recipe)
    document = json.loads((service.root / "plan.json").read_text())
    (take,) = [e for e in document["to_run"] if e["stage"] == "take"]
    assert take["paid"] and take["key"] is None and take["pending"] == ["video"]
    assert take["components"]["params"]["prompt"] == (
        "The character wears a red jacket and dances on a rooftop."
    )
    assert {"mode", "duration", "character_orientation", "keep_original_sound", "image"} <= set(
        take["components"]["params"]
    )

    path = service.root / recipe
    path.write_text(path.read_text().replace("rooftop", "volcano"))
    edited = service.run_json("--plan", "plan.json", recipe=recipe)
    assert edited["_exit"] == 2
    assert (
        "take[red-jacket] changed since the plan: prompt: '…jacket and dances on a rooftop.' -> "
        "'…jacket and dances on a volcano.'"
    ) in edited["_stderr"]
    assert "the recipe file changed since the plan" in edited["_stderr"]
    assert service.fake.submissions == []
    assert not (service.root / "out").exists()

    path.write_text(path.read_text().replace("volcano", "rooftop"))
    ran = service.run_json("--plan", "plan.json", recipe=recipe)
    assert (ran["_exit"], ran["jobs_submitted"]) == (0, 1), ran["_stderr"]
    assert service.submits_by_prompt() == {
        "The character wears a red jacket and dances on a rooftop.": 1
    }


@pytest.mark.slow
def test_a_generation_whose_media_this_run_makes_is_checked_before_it_is_submitted(
    service: Service,
) -> None:
    """`run --plan` can only compare a clip made during the run once it exists: the executor
    asks before submitting. Here the plan says which clip was reviewed (as a plan made where
    the clip existed would), and the run makes another one."""
    recipe = clipped(service)
    plan_file(service.cli, recipe)

    def reviewed_another_clip(document: dict[str, Any]) -> None:
        take = next(e for e in document["to_run"] if e["stage"] == "take")
        take["components"]["params"]["video"] = {"$file": "blake3:" + "0" * 64}
        take["pending"] = []

    restamp(service.root / "plan.json", reviewed_another_clip)
    proc = service.cli("run", recipe, "--plan", "plan.json")
    assert proc.returncode == 2, proc.stderr
    assert "✓ clip[red-jacket]" in proc.stdout  # the free stage ran before the check
    assert (
        "take[red-jacket]: not submitted: it differs from the reviewed plan: input 'video' "
        "changed: blake3:00000000… -> blake3:"
    ) in proc.stderr
    assert "Nothing was submitted for these generations" in proc.stderr
    assert service.fake.submissions == []
    assert not list((service.root / "out").rglob("take.mp4"))


def test_a_paid_generation_removed_after_review_refuses(project: Project) -> None:
    project.write("small.yaml", VARS_RECIPE)
    plan_file(project.cli, "small.yaml")
    project.write("small.yaml", VARS_RECIPE.replace("[red jacket, white hoodie]", "[red jacket]"))
    proc = project.cli("run", "small.yaml", "--plan", "plan.json")
    assert proc.returncode == 2
    assert (
        "take[white-hoodie] (a paid generation in the plan, $0.42) is no longer in the recipe"
        in (proc.stderr)
    )
    assert not project.out("small").exists()


# -- 12. amounts of dollars are finite numbers >= 0, or nothing runs ---------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e400", "twelve"])
def test_max_usd_must_be_a_finite_amount(project: Project, value: str) -> None:
    project.write("small.yaml", VARS_RECIPE)
    for command in ("plan", "run", "impact"):
        proc = project.cli(command, "small.yaml", "--max-usd", value)
        assert proc.returncode == 2, (command, proc.stdout)
        assert "Invalid value for '--max-usd'" in proc.stderr
        assert "pass a finite number of dollars >= 0, e.g. --max-usd 12.50" in proc.stderr
    assert not project.out("small").exists()


@pytest.mark.slow
def test_a_nan_budget_never_reaches_the_paid_service(service: Service) -> None:
    service.recipe(["red jacket"], budget=None)
    proc = service.cli("run", "paid.yaml", "--max-usd", "nan")
    assert proc.returncode == 2
    assert "NaN is not a number of dollars" in proc.stderr
    for bad in (".inf", ".nan", "-5"):
        service.recipe(["red jacket"], budget=None, extra="")
        path = service.root / "paid.yaml"
        path.write_text(
            path.read_text().replace("publish:", f"budget: {{max_usd: {bad}}}\npublish:")
        )
        proc = service.cli("run", "paid.yaml", "--yes")
        assert proc.returncode == 2, (bad, proc.stderr)
        assert "paid.yaml:4:" in proc.stderr and "budget.max_usd:" in proc.stderr
        assert "Write e.g. budget: {max_usd: 12.50}, or remove max_usd" in proc.stderr
    assert service.fake.submissions == []


@pytest.mark.parametrize(
    ("price", "problem"),
    [
        ("NaN", "NaN is not a number of dollars"),
        ("Infinity", "inf is not a finite number of dollars"),
        ("-0.14", "-0.14 is negative"),
        ('"0.14"', "'0.14' is not a number"),
    ],
)
@pytest.mark.slow
def test_price_table_prices_must_be_finite_amounts(
    project: Project, price: str, problem: str
) -> None:
    project.write("small.yaml", VARS_RECIPE)
    table = project.root / "prices.json"
    table.write_text(
        '{"model": "kling-v3-motion-control", "as_of": "2027-01-01", '
        f'"per_second": {{"std": {price}, "pro": 0.18}}}}'
    )
    env = {"MOTIONFLOW_PRICES": str(table)}
    for command in ("plan", "run", "impact"):
        proc = project.cli(command, "small.yaml", env=env)
        assert proc.returncode == 2, (command, proc.stdout)
        assert f"the price table {str(table)!r}: per_second['std']: {problem}" in proc.stderr
        assert "unset MOTIONFLOW_PRICES" in proc.stderr
        assert "$nan" not in proc.stdout
    assert not project.out("small").exists()
    assert not project.cache.exists()  # refused before the cache is opened


@pytest.mark.parametrize("field", ["estimated_usd", "to_run", "budget"])
@pytest.mark.parametrize("value", [math.nan, -0.5])
def test_amounts_read_back_from_a_plan_file_must_be_finite(
    project: Project, field: str, value: float
) -> None:
    project.write("small.yaml", VARS_RECIPE)
    plan_file(project.cli, "small.yaml")

    def edit(document: dict[str, Any]) -> None:
        if field == "to_run":
            document["to_run"][-1]["estimated_usd"] = value
        elif field == "budget":
            document["budget"]["max_usd"] = value
        else:
            document[field] = value

    path = project.root / "plan.json"
    if math.isfinite(value):
        restamp(path, edit)  # a negative amount with a matching digest
    else:  # NaN and Infinity have no canonical JSON, so no digest can match them
        document = json.loads(path.read_text())
        edit(document)
        path.write_text(json.dumps(document))
    proc = project.cli("run", "small.yaml", "--plan", "plan.json")
    assert proc.returncode == 2, proc.stdout
    named = {
        "estimated_usd": "'estimated_usd':",
        "to_run": "'estimated_usd' of take[white-hoodie]:",
        "budget": "'budget.max_usd':",
    }[field]
    assert f"the plan file 'plan.json': {named}" in proc.stderr
    assert "a finite number >= 0" in proc.stderr
    assert "Write it again with `motionflow plan RECIPE -o FILE`" in proc.stderr
    assert not project.out("small").exists()


# -- 13. plan and impact judge the budget as run does ----------------------------------------


@pytest.mark.slow
def test_plan_and_impact_show_the_budget_and_refuse_a_plan_over_it(project: Project) -> None:
    project.write(
        "small.yaml",
        VARS_RECIPE.replace("provider: simulate", "provider: simulate\nbudget: {max_usd: 0.5}"),
    )
    for command in ("plan", "impact"):
        text = project.cli(command, "small.yaml")
        assert text.returncode == 3, (command, text.stderr)
        assert "Budget: $0.50 (budget.max_usd); the plan costs $0.84: over the budget." in (
            text.stdout
        )
        assert "over the budget of $0.50 (budget.max_usd)" in text.stderr
        assert "`motionflow run` would refuse it (exit 3)" in text.stderr
        as_json = project.cli(command, "small.yaml", "--json")
        assert as_json.returncode == 3
        assert json.loads(as_json.stdout)["budget"] == {
            "max_usd": 0.5,
            "source": "budget.max_usd",
            "estimated_usd": 0.84,
            "estimate_exact": True,
            "over": True,
            "may_exceed": False,
        }
        raised = project.cli(command, "small.yaml", "--max-usd", "1")
        assert raised.returncode == 0, raised.stderr
        assert "Budget: $1.00 (--max-usd); the plan costs $0.84, within it ($0.16 left)." in (
            raised.stdout
        )
    unwritten = project.cli("plan", "small.yaml", "-o", "plan.json")
    assert unwritten.returncode == 3 and "plan.json was not written" in unwritten.stderr
    assert not (project.root / "plan.json").exists()
    run = project.cli("run", "small.yaml")  # the same verdict
    assert run.returncode == 3 and "over the budget of $0.50" in run.stderr
    assert not project.out("small").exists()


@pytest.mark.slow
def test_an_upper_bound_over_the_budget_warns_as_run_does(project: Project) -> None:
    project.write("clipped.yaml", CLIPPED.format(provider="simulate", publish="{kind: loopback}"))
    for command in ("plan", "impact"):
        proc = project.cli(command, "clipped.yaml", "--max-usd", "0.3", "--json")
        assert proc.returncode == 0, proc.stderr
        budget = json.loads(proc.stdout)["budget"]
        assert (budget["over"], budget["may_exceed"], budget["estimate_exact"]) == (
            False,
            True,
            False,
        )
        text = project.cli(command, "clipped.yaml", "--max-usd", "0.3")
        assert "the plan costs ≤$0.42, which may pass it" in text.stdout
    run = project.cli("run", "clipped.yaml", "--max-usd", "0.3")  # starts, then skips the take
    assert run.returncode == 3, run.stderr
    assert "warning: the plan costs at most $0.42, over the budget of $0.30" in run.stdout
    assert "✓ clip[red-jacket]" in run.stdout and "skipped: budget" in run.stdout
    assert not list(project.out("clipped").rglob("take.mp4"))
