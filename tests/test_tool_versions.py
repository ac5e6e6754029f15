"""Tool versions are recorded, not keyed: a teammate's other ffmpeg build re-runs (and pays)
nothing; ``--rebuild-on-tool-change`` is the explicit opt-in.

The teammate is simulated by ``MOTIONFLOW_FFMPEG`` pointing at a wrapper that runs the real
ffmpeg (so the bytes are the same) but names another version for ``-version``.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
from conftest import Project, clone_into, new_project
from hostile.archives import forge, read_members, set_field

REAL = str(imageio_ffmpeg.get_ffmpeg_exe())
OTHER_LINE = "ffmpeg version 7.0-teammate Copyright (c) 2000-2024 the FFmpeg developers"

RECIPE = """\
version: 1
name: tools
provider: simulate
inputs: {hero: assets/hero.png, dance: assets/dance.mp4}
stages:
  still: {uses: image.prepare, with: {src: "${inputs.hero}"}}
  clip: {uses: video.prepare, with: {src: "${inputs.dance}", duration: 3}}
  take:
    uses: kling.motion_control
    with:
      image: "${stages.still.image}"
      video: "${stages.clip.video}"
      prompt: "a dancer on a rooftop"
      character_orientation: video
      duration: 3
outputs: [take, still]
"""

Snap = Callable[[Path], dict[str, tuple[int, int]]]


def _real_line() -> str:
    from motionflow.media.ffmpeg import ffmpeg_version

    return ffmpeg_version(REAL)


def _other_ffmpeg(folder: Path) -> dict[str, str]:
    """The environment of a teammate whose ffmpeg says it is 7.0 (same bytes underneath)."""
    wrapper = folder / "ffmpeg-teammate"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-version" ]; then echo "{OTHER_LINE}"; exit 0; fi\n'
        f'exec "{REAL}" "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {"MOTIONFLOW_FFMPEG": str(wrapper)}


def _run(project: Project, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = project.cli("run", "tools.yaml", *args, "--json", env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _plan(project: Project, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = project.cli("plan", "tools.yaml", *args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    body: dict[str, Any] = json.loads(proc.stdout)
    return {i["stage"]: i for i in body["instances"]}


@pytest.fixture(scope="module")
def _ran_once(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The recipe, run once with the real ffmpeg."""
    source = new_project(tmp_path_factory.mktemp("tools"))
    source.write("tools.yaml", RECIPE)
    result = _run(source, env={"MOTIONFLOW_FFMPEG": REAL})
    assert (result["executed"], result["jobs_submitted"]) == (3, 1), result
    return source


@pytest.fixture
def ran(project: Project, _ran_once: Project) -> Project:
    return clone_into(_ran_once, project)


def test_another_ffmpeg_reuses_everything(ran: Project, tmp_path: Path, files_under: Snap) -> None:
    other = _other_ffmpeg(tmp_path)
    before = files_under(ran.out("tools"))
    plan = _plan(ran, env=other)
    assert {s: i["status"] for s, i in plan.items()} == dict.fromkeys(plan, "cached")
    result = _run(ran, env=other)
    assert (result["executed"], result["jobs_submitted"], result["cached"]) == (0, 0, 3)
    assert result["spent_usd"] == 0.0 and result["estimated_usd"] == 0.0
    assert files_under(ran.out("tools")) == before  # the same files, not even rewritten


def test_why_shows_both_versions_and_that_it_is_no_reason_to_rebuild(
    ran: Project, tmp_path: Path
) -> None:
    other = _other_ffmpeg(tmp_path)
    real_short = _real_line().split()[2]
    proc = ran.cli("why", "tools.yaml", "still", env=other)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # words may wrap at the console's width
    assert f"made with ffmpeg {real_short}; this machine has ffmpeg 7.0-teammate" in text
    assert "not a reason to rebuild" in text and "--rebuild-on-tool-change" in text
    assert "unchanged (cached)" in text

    proc = ran.cli("why", "tools.yaml", "--json", env=other)
    assert proc.returncode == 0, proc.stderr
    items = {i["stage"]: i for i in json.loads(proc.stdout)["instances"]}
    still = items["still"]
    assert still["status"] == "cached" and still["unchanged"]
    assert still["tools"]["recorded"] == {"ffmpeg": _real_line()}
    assert still["tools"]["here"] == {"ffmpeg": OTHER_LINE}
    assert still["tools"]["changed"] == [
        {"tool": "ffmpeg", "recorded": _real_line(), "here": OTHER_LINE}
    ]
    assert "not a reason to rebuild" in still["tools"]["note"]
    assert items["take"]["tools"]["changed"] == []  # a generation records no tool

    same = json.loads(
        ran.cli("why", "tools.yaml", "--json", env={"MOTIONFLOW_FFMPEG": REAL}).stdout
    )
    still = next(i for i in same["instances"] if i["stage"] == "still")
    assert still["tools"]["changed"] == [] and "the same here" in still["tools"]["note"]


def test_rebuild_on_tool_change_reruns_the_media_stages_only(ran: Project, tmp_path: Path) -> None:
    other = _other_ffmpeg(tmp_path)
    real_short = _real_line().split()[2]
    plan = _plan(ran, "--rebuild-on-tool-change", env=other)
    reason = f"ffmpeg changed: {real_short} -> 7.0-teammate (--rebuild-on-tool-change)"
    for stage in ("still", "clip"):
        assert (plan[stage]["status"], plan[stage]["reason"]) == ("run", reason)
    assert plan["take"]["status"] == "run"  # it waits: the new bytes are not known yet
    assert plan["take"]["reason"].startswith("waits for")
    text = ran.cli("plan", "tools.yaml", "--rebuild-on-tool-change", env=other).stdout
    assert "--rebuild-on-tool-change" in " ".join(text.split())

    # a plain run reuses everything and leaves a run stamp for this environment ...
    assert _run(ran, env=other)["executed"] == 0
    # ... which the flag does not take as "nothing to do": it plans in full and rebuilds
    result = _run(ran, "--rebuild-on-tool-change", env=other)
    # the same real ffmpeg underneath: the same bytes, so the generation is still reused
    assert (result["executed"], result["cached"], result["jobs_submitted"]) == (2, 1, 0)
    receipt = json.loads((ran.out("tools") / "default" / "still.receipt.json").read_text())
    assert receipt["tools"] == {"ffmpeg": OTHER_LINE}  # the fresh record replaced the old

    # done: the records now match this machine, and nothing is planned again
    again = _plan(ran, "--rebuild-on-tool-change", env=other)
    assert {i["status"] for i in again.values()} == {"cached"}
    assert _run(ran, "--rebuild-on-tool-change", env=other)["executed"] == 0


def test_rebuild_flag_without_a_tool_change_reruns_nothing(ran: Project) -> None:
    real = {"MOTIONFLOW_FFMPEG": REAL}
    plan = _plan(ran, "--rebuild-on-tool-change", env=real)
    assert {i["status"] for i in plan.values()} == {"cached"}
    # the flag skips the no-op fast path (it plans in full), and still runs nothing
    result = _run(ran, "--rebuild-on-tool-change", env=real)
    assert (result["executed"], result["jobs_submitted"], result["cached"]) == (0, 0, 3)


def test_receipts_carry_the_tools(ran: Project) -> None:
    folder = ran.out("tools") / "default"
    still = json.loads((folder / "still.receipt.json").read_text())
    assert still["tools"] == {"ffmpeg": _real_line()}
    assert "ffmpeg" not in still["environment"]  # recorded, not keyed
    take = json.loads((folder / "take.receipt.json").read_text())
    assert take["tools"] == {}


@pytest.mark.parametrize(
    ("tools", "words"),
    [
        (["ffmpeg 7.0"], "is not an object"),
        ({"ffmpeg": 7}, "is not a short text"),
        ({"ffmpeg": "x" * 300}, "is not a short text"),
        ({f"tool{i}": "1" for i in range(33)}, "more than 32 tools"),
        ({"ffmpeg": "7.0\x1b[31m"}, "control characters"),
    ],
)
def test_an_import_with_a_malformed_tools_field_is_refused(
    ran: Project, tmp_path: Path, tools: Any, words: str
) -> None:
    archive = tmp_path / "good.tar.gz"
    assert ran.cli("cache", "export", str(archive), "--all").returncode == 0
    members = read_members(archive)
    forged = forge(
        tmp_path / "forged.tar.gz", members, set_field("image.prepare", "tools", value=tools)
    )
    other = new_project(tmp_path / "other")
    proc = other.cli("cache", "import", str(forged))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert "results.json" in message and "field tools" in message and words in message
    assert "nothing was imported" in message
    # the export as made (valid tools) imports fine
    assert other.cli("cache", "import", str(archive)).returncode == 0
