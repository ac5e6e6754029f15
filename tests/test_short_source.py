"""A source clip too short for the model is a recipe error at plan time, not a run failure."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import Project

from motionflow.media.ffmpeg import find_ffmpeg

RECIPE = """\
version: 1
name: short
provider: simulate
inputs:
  hero: assets/hero.png
  dance: assets/SOURCE
stages:
  clip:
    uses: video.prepare
    with: {src: "${inputs.dance}", start: START, duration: 3, orientation: video}
  take:
    uses: kling.motion_control
    with:
      image: ${inputs.hero}
      video: ${stages.clip.video}
      prompt: a dancer
      duration: 3
      character_orientation: video
outputs: [take]
"""


def clip(project: Project, seconds: float) -> Path:
    """The sample dance cut to ``seconds`` (re-encoded, so it is exactly that long)."""
    dest = project.root / "assets" / "short.mp4"
    args = [find_ffmpeg(), "-v", "error", "-y", "-i", str(project.root / "assets" / "dance.mp4")]
    args += ["-t", str(seconds), "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(dest)]
    subprocess.run(args, check=True)
    return dest


def recipe(project: Project, source: str, start: float = 0) -> Path:
    text = RECIPE.replace("SOURCE", source).replace("START", f"{start:g}")
    return project.write("short.yaml", text)


@pytest.mark.slow
def test_a_too_short_source_is_refused_at_plan_time(project: Project) -> None:
    source = clip(project, 2)
    recipe(project, "short.mp4")
    for command in ("plan", "validate"):
        proc = project.cli(command, "short.yaml")
        assert proc.returncode == 2, proc.stderr
        message = " ".join(proc.stderr.split())
        assert "short.yaml:10" in message  # the line of src: ${inputs.dance}
        assert "${inputs.dance}" in message
        assert "short.mp4' is only 2.00 s long" in message
        assert "at least 3 s" in message and "use a longer clip" in message
        assert "raise duration" not in message  # it cannot help
    ran = project.cli("run", "short.yaml", "--json")
    assert ran.returncode == 2, ran.stderr
    assert not project.out("short").exists()  # nothing ran, nothing was submitted
    assert source.is_file()


def test_a_start_too_late_is_refused_at_plan_time_with_its_fix(project: Project) -> None:
    recipe(project, "dance.mp4", start=2)  # 4 s long: 2 s left after start
    proc = project.cli("plan", "short.yaml")
    assert proc.returncode == 2, proc.stderr
    message = " ".join(proc.stderr.split())
    assert "would be 2.00 s long" in message and "source is 4.00 s" in message
    assert "lower start (to at most 1.00 s)" in message


@pytest.mark.slow
def test_a_long_enough_source_plans_and_runs(project: Project) -> None:
    recipe(project, "dance.mp4", start=1)
    plan = project.plan_json("short.yaml")
    assert plan["to_run"] == 2
    ran = project.run_json("short.yaml")
    assert (ran["_exit"], ran["jobs_submitted"]) == (0, 1), ran["_stderr"]
