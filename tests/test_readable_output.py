"""Output a person can read (issue 11): tables fit 80 columns, sweeps' reasons are collapsed,
and a cache hit says which recipe made it.

The CLI runs as a subprocess with stdout piped, as a user's ``| less`` would: rich then lays
tables out for 80 columns (``COLUMNS=80`` makes it explicit).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, TINY_RECIPE, Project
from service import Service, make_service, new_project

from motionflow.fakeapi.faults import Faults
from motionflow.plan import describe_origin, made_by

NARROW = {"COLUMNS": "80"}
OUTFITS = [
    "red bomber jacket with a very long description",
    "white hoodie",
    "denim overalls",
    "black tuxedo",
    "yellow raincoat",
]
MONEY = re.compile(r"\$\d+\.\d\d")


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _assert_narrow(text: str) -> None:
    """Every line fits 80 columns, but for one last word that cannot wrap (a path to copy)."""
    too_wide = [line for line in _lines(text) if len(line.rstrip().rsplit(" ", 1)[0]) > 80]
    assert not too_wide, "\n".join(too_wide)


def _cells(text: str) -> set[str]:
    """Every table cell's text (one line of it), stripped."""
    return {
        cell.strip() for line in _lines(text) for cell in re.split(r"[│┃]", line) if cell.strip()
    }


def _row(line: str) -> list[str]:
    """The cells of one table line."""
    return [cell.strip() for cell in line.strip("│").split("│")]


@pytest.fixture(scope="module")
def paid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A journal with stored, failed and replaced jobs of two recipes, and their cache."""
    root, cache = new_project(tmp_path_factory.mktemp("paid"))
    svc = make_service(root, cache, faults=Faults(fail_jobs=1))
    try:
        svc.recipe(OUTFITS, name="first-recipe-with-a-long-name")
        svc.run_json("--jobs", "1", recipe="first-recipe-with-a-long-name.yaml")
        svc.recipe(OUTFITS[:2], name="second", takes=2)
        svc.run_json(recipe="second.yaml")  # exit 1: the failed generation is not retried
        yield svc
    finally:
        svc.fake.stop()
        svc.static.stop()


@pytest.mark.slow
def test_jobs_fit_80_columns_with_whole_ids_and_amounts(paid: Service) -> None:
    proc = paid.cli("jobs", "--all", env=NARROW)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    _assert_narrow(proc.stdout)
    rows = paid.jobs("--all")
    cells = _cells(proc.stdout)
    for row in rows:
        assert row["job_id"] in cells  # never split across lines
    amounts = {f"${r['actual_usd']:.2f}" for r in rows if r["actual_usd"] is not None}
    assert amounts and amounts <= {m for c in cells for m in MONEY.findall(c)}
    # a line or so per job (44 jobs took 415 lines once); only a long instance name wraps
    table = [line for line in _lines(proc.stdout) if line.startswith("│")]
    assert len(table) <= 2 * len(rows)


@pytest.mark.slow
def test_spend_fits_80_columns(paid: Service) -> None:
    for by in ("recipe", "stage", "day"):
        proc = paid.cli("spend", "--by", by, env=NARROW)
        assert proc.returncode == 0, proc.stderr
        print(proc.stdout)
        _assert_narrow(proc.stdout)
        assert "first-recipe-with-a-long-name" in _cells(proc.stdout) or by != "recipe"


def test_cache_ls_and_du_fit_80_columns_with_whole_keys_and_kinds(paid: Service) -> None:
    proc = paid.cli("cache", "ls", env=NARROW)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    _assert_narrow(proc.stdout)
    entries = json.loads(paid.cli("cache", "ls", "--json").stdout)
    rows = [_row(line) for line in _lines(proc.stdout) if line.startswith("│")]
    for entry in entries:
        assert [entry["key"][:12], entry["stage_kind"]] in [row[:2] for row in rows]
    assert len([line for line in _lines(proc.stdout) if line.startswith("│")]) == len(entries)
    du = paid.cli("cache", "du", env=NARROW)
    assert du.returncode == 0, du.stderr
    _assert_narrow(du.stdout)


# -- plan: collapsed waits, 80 columns, and where a hit came from ------------------------------

SWEEP = (REPO / "recipes" / "sweep.yaml").read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_sweep_plan_fits_80_columns_and_counts_what_it_waits_for(project: Project) -> None:
    project.write("sweep.yaml", SWEEP)
    summary = project.cli("plan", "sweep.yaml", env=NARROW)
    assert summary.returncode == 0, summary.stderr
    _assert_narrow(summary.stdout)
    rows = {row[0]: row for row in map(_row, _lines(summary.stdout)) if len(row) == 5}
    assert rows["poster"][3] == "waits for take ×20"  # not one "take[...]" row per variant
    assert rows["take"][3] == "waits for clip, still ×20"
    assert rows["take"][4] == "≤$8.40"
    full = project.cli("plan", "sweep.yaml", "--all", env=NARROW)
    assert full.returncode == 0, full.stderr
    _assert_narrow(full.stdout)
    gathered = SWEEP.replace(
        "outputs: [take, poster]",
        "  sheet: {uses: video.compare, over: variants, with: {videos: "
        '"${stages.take.video}"}}\noutputs: [take, poster, sheet]',
    )
    project.write("sweep.yaml", gathered)
    plan = project.plan_json("sweep.yaml")
    (sheet,) = [i for i in plan["instances"] if i["stage"] == "sheet"]
    assert len(sheet["waits_for"]) == 20 and sheet["reason"].startswith("waits for take[")
    full = project.cli("plan", "sweep.yaml", "--all", env=NARROW)
    _assert_narrow(full.stdout)
    rows = [_row(line) for line in _lines(full.stdout) if line.startswith("│")]
    start = next(i for i, row in enumerate(rows) if row[0] == "sheet")
    end = next((i for i in range(start + 1, len(rows)) if rows[i][0]), len(rows))
    reason = " ".join(row[3] for row in rows[start:end] if row[3])
    assert reason == "waits for 20 take instances"


@pytest.mark.slow
def test_a_hit_made_by_another_project_says_which_recipe_made_it(
    project: Project, tmp_path: Path
) -> None:
    project.write("tiny.yaml", TINY_RECIPE)
    assert project.run_json("tiny.yaml")["_exit"] == 0
    mine = project.plan_json("tiny.yaml")
    assert {i["reason"] for i in mine["instances"]} == {"unchanged"}
    # a fresh project on the same machine: the shared cache answers, and says whose work it is
    other = Project(tmp_path / "fresh", project.cache)
    shutil.copytree(project.root / "assets", other.root / "assets")
    (other.root / "motionflow.toml").write_text("", encoding="utf-8")
    other.write("tiny.yaml", TINY_RECIPE)
    plan = other.plan_json("tiny.yaml")
    day = plan["instances"][0]["made_by"]["at"]
    assert len(day) == 10  # YYYY-MM-DD
    for item in plan["instances"]:
        assert item["status"] == "cached"
        assert item["made_by"] == {"recipe": "tiny", "at": day, "imported_from": None}
        assert item["reason"] == f"made by tiny, {day}"
    proc = other.cli("plan", "tiny.yaml", env=NARROW)
    _assert_narrow(proc.stdout)
    assert f"made by tiny, {day}" in proc.stdout
    assert "shared by every project" in " ".join(proc.stdout.split())


def test_records_from_before_the_recipe_was_recorded_say_made_earlier() -> None:
    old = {"meta": {"job_id": "job_1"}, "created_at": "2025-01-31T10:00:00.000+00:00"}
    assert made_by(old) == {"recipe": None, "at": "2025-01-31", "imported_from": None}
    assert describe_origin(made_by(old)) == "made earlier, 2025-01-31"
    imported = {**old, "meta": {"recipe": "x", "imported_from": "team.tar.gz"}}
    assert describe_origin(made_by(imported)) == "imported from team.tar.gz, 2025-01-31"
    assert describe_origin(made_by({"meta": "garbage"})) == "made earlier"


@pytest.mark.slow
def test_the_run_summary_fits_80_columns(project: Project) -> None:
    project.write("tiny.yaml", TINY_RECIPE)
    proc = project.cli("run", "tiny.yaml", env=NARROW)
    assert proc.returncode == 0, proc.stderr
    _assert_narrow(proc.stdout)
    assert "saved by the cache" in proc.stdout
