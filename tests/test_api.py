"""The library API: typed events, reuse, concurrency limits, failure isolation (in-process)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import motionflow
from motionflow import events as ev
from motionflow.errors import BudgetError

STEPS = """\
import asyncio

running = 0
peak = 0


async def slow(word):
    global running, peak
    running += 1
    peak = max(peak, running)
    await asyncio.sleep(0.05)
    running -= 1
    return word.upper()
"""

RECIPE = """\
version: 1
name: api
matrix: {word: [a, b, c, d, e, f]}
stages:
  up: {uses: python, with: {call: "MODULE:slow", word: "{{ word }}"}}
outputs: [up]
"""


def make(tmp_path: Path, module: str) -> Path:
    (tmp_path / "motionflow.toml").write_text("")
    (tmp_path / f"{module}.py").write_text(STEPS)
    path = tmp_path / "api.yaml"
    path.write_text(RECIPE.replace("MODULE", module))
    return path


def run(
    path: Path, cache: Path, **kwargs: object
) -> tuple[motionflow.executor.RunResult, list[ev.Event]]:  # type: ignore[name-defined]
    seen: list[ev.Event] = []
    recipe = motionflow.load_recipe(path)
    result = asyncio.run(motionflow.run(recipe, cache_dir=cache, reporter=seen.append, **kwargs))  # type: ignore[arg-type]
    return result, seen


def test_events_describe_the_run_and_the_reuse(tmp_path: Path) -> None:
    path = make(tmp_path, "steps_events")
    result, seen = run(path, tmp_path / "cache")
    assert isinstance(seen[0], ev.RunStarted) and seen[0].to_run == 6
    assert sum(isinstance(e, ev.InstanceFinished) for e in seen) == 6 == result.executed
    assert sum(isinstance(e, ev.OutputWritten) for e in seen) == 12  # value + receipt each
    assert (tmp_path / "out/api/c/up.txt").read_text() == "C\n"

    result, seen = run(path, tmp_path / "cache")
    assert result.executed == 0 and result.cached == 6
    assert not [e for e in seen if isinstance(e, ev.InstanceStarted | ev.OutputWritten)]
    assert sum(isinstance(e, ev.InstanceCached) for e in seen) == 6


def test_jobs_bounds_concurrency(tmp_path: Path) -> None:
    import importlib

    path = make(tmp_path, "steps_jobs")
    run(path, tmp_path / "cache", jobs=3)
    module = importlib.import_module("steps_jobs")
    assert module.peak == 3
    module.peak = 0
    path.write_text(path.read_text().replace("[a, b, c, d, e, f]", "[g, h, i, j]"))
    run(path, tmp_path / "cache", jobs=1)
    assert module.peak == 1


def test_budget_error_from_the_api(tmp_path: Path) -> None:
    (tmp_path / "motionflow.toml").write_text("")
    assets = Path(__file__).resolve().parents[1] / "recipes" / "assets"
    path = tmp_path / "k.yaml"
    path.write_text(
        f"""\
version: 1
inputs: {{hero: {assets / "hero.png"}, dance: {assets / "dance.mp4"}}}
stages:
  take:
    uses: kling.motion_control
    with: {{image: "${{inputs.hero}}", video: "${{inputs.dance}}", prompt: "x", duration: 4, character_orientation: video}}
"""
    )
    recipe = motionflow.load_recipe(path, allow_outside_project=True)
    try:
        asyncio.run(motionflow.run(recipe, cache_dir=tmp_path / "cache", max_usd=0.5))
    except BudgetError as exc:
        assert "$0.56" in str(exc) and exc.exit_code == 3
    else:
        raise AssertionError("the budget was not enforced")
