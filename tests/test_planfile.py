"""Plan files: ``plan -o`` stamps a reviewed plan; ``run --plan`` runs it or refuses on drift."""

from __future__ import annotations

import json

import pytest
from conftest import SMALL_RECIPE, Project, repaint

RECIPE = SMALL_RECIPE

PRICES = {
    "model": "kling-v3-motion-control",
    "as_of": "2027-01-01",
    "per_second": {"std": 0.2, "pro": 0.3},
}


def planned(project: Project, text: str = RECIPE) -> dict[str, object]:
    project.write("small.yaml", text)
    proc = project.cli("plan", "small.yaml", "-o", "plan.json")
    assert proc.returncode == 0, proc.stderr
    assert "wrote plan.json" in proc.stdout
    document: dict[str, object] = json.loads((project.root / "plan.json").read_text())
    return document


def refused(project: Project, *, env: dict[str, str] | None = None) -> str:
    proc = project.cli("run", "small.yaml", "--plan", "plan.json", "--json", env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Nothing was run or spent" in proc.stderr
    assert not (project.cache / "journal").exists() or not any(
        (project.cache / "journal").rglob("*.json")
    )
    assert not project.out("small").exists()
    return proc.stderr


def test_plan_file_records_what_it_relies_on(project: Project) -> None:
    document = planned(project)
    assert document["format"] == "motionflow-plan"
    assert document["recipe"]["name"] == "small"  # type: ignore[index]
    assert document["provider"] == "simulate"
    assert set(document["inputs"]) == {"hero", "dance"}  # type: ignore[arg-type]
    assert all(str(d).startswith("blake3:") for d in document["inputs"].values())  # type: ignore[attr-defined]
    assert document["prices"]["per_second"] == {"pro": 0.18, "std": 0.14}  # type: ignore[index]
    assert document["prices"]["as_of"]  # type: ignore[index]
    assert document["estimated_usd"] == 0.84
    to_run = document["to_run"]
    assert len(to_run) == 4 and all(e["key"] for e in to_run)  # type: ignore[arg-type,index]
    assert str(document["digest"]).startswith("blake3:")
    assert document["motionflow"]


@pytest.mark.slow
def test_round_trip_runs_the_plan(project: Project) -> None:
    planned(project)
    result = project.run_json("small.yaml", "--plan", "plan.json")
    assert (result["_exit"], result["executed"], result["jobs_submitted"]) == (0, 4, 2)
    # cached at plan time, still cached: fine (and the stamp fast path does not skip the check)
    planned(project)
    again = project.run_json("small.yaml", "--plan", "plan.json")
    assert (again["_exit"], again["executed"], again["jobs_submitted"]) == (0, 0, 0)
    # a plan made before the run still runs after it: its instances are now cached
    project.write("small.yaml", RECIPE.replace("rooftop", "beach"))
    planned(project, RECIPE.replace("rooftop", "beach"))
    project.run_json("small.yaml")
    assert project.run_json("small.yaml", "--plan", "plan.json")["_exit"] == 0


def test_a_changed_input_refuses(project: Project) -> None:
    document = planned(project)
    hero = project.root / "assets" / "hero.png"
    repaint(hero)
    err = refused(project)
    old = document["inputs"]["hero"]  # type: ignore[index]
    assert f"input 'hero' changed: {old[:15]}… -> blake3:" in err


def test_a_changed_parameter_refuses(project: Project) -> None:
    planned(project)
    project.write("small.yaml", RECIPE.replace("duration: 3", "duration: 4"))
    err = refused(project)
    assert "take[red-jacket] changed since the plan: duration: 3.0 -> 4.0" in err


def test_a_new_instance_refuses(project: Project) -> None:
    planned(project)
    project.write("small.yaml", RECIPE.replace("white hoodie]", "white hoodie, cape]"))
    err = refused(project)
    assert "take[cape] would run (new) but is not in the plan" in err


def test_a_changed_price_refuses(project: Project) -> None:
    planned(project)
    (project.root / "prices.json").write_text(json.dumps(PRICES))
    err = refused(project, env={"MOTIONFLOW_PRICES": str(project.root / "prices.json")})
    assert "the price table changed: as of" in err and "-> 2027-01-01" in err
    assert "std $0.14/s -> $0.2/s" in err


@pytest.mark.slow
def test_a_malformed_plan_file_refuses(project: Project) -> None:
    planned(project)
    path = project.root / "plan.json"
    document = json.loads(path.read_text())
    document["estimated_usd"] = 0.01  # edited after review
    path.write_text(json.dumps(document))
    assert "it was edited" in refused(project)
    path.write_text("{not json")
    assert "is not JSON" in refused(project)
    path.write_text("[]")
    assert "not a motionflow plan" in refused(project)
    proc = project.cli("run", "small.yaml", "--plan", "missing.json")
    assert proc.returncode == 2 and "it does not exist" in proc.stderr
