"""The gallery keeps a history of runs, and simulated takes of different variants look different."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ASSETS, Project, clone_into, new_project

from motionflow.fakeapi.render import render_simulated_video, wrap_prompt
from motionflow.media.fonts import ENV_FONT

RECIPE = """\
version: 1
name: hist
provider: simulate
vars: {style: "on a roof"}
matrix:
  outfit: [red jacket, white hoodie]
inputs:
  hero: assets/hero.png
  dance: assets/dance.mp4
stages:
  prompt: {uses: prompt, with: {template: "A dancer in a {{ outfit }} {{ style }}."}}
  take:
    uses: kling.motion_control
    with:
      image: ${inputs.hero}
      video: ${inputs.dance}
      prompt: ${stages.prompt.text}
      duration: 3
      character_orientation: video
outputs: [take]
"""


def _records(out: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def _options(html: str) -> list[str]:
    select = re.search(r'<select id="run">(.*?)</select>', html, re.S)
    assert select is not None
    return re.findall(r'<option value="([^"]+)"', select.group(1))


@pytest.fixture(scope="module")
def _ran_twice(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The recipe run with two styles, once for the module (each test gets a copy)."""
    source = new_project(tmp_path_factory.mktemp("hist"))
    source.write("hist.yaml", RECIPE)
    for style in ("in the rain", "at dawn"):
        proc = source.cli("run", "hist.yaml", "--quiet", "--var", f"style={style}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return source


@pytest.fixture
def two_runs(project: Project, _ran_twice: Project) -> Project:
    """A project where the recipe ran twice, with two styles: ``out/hist`` has two records."""
    return clone_into(_ran_twice, project)


@pytest.mark.slow
def test_each_run_leaves_a_record_and_the_page_keeps_earlier_runs(two_runs: Project) -> None:
    project = two_runs
    out = project.out("hist")
    records = _records(out)
    assert [r["overrides"] for r in records] == [{"style": "in the rain"}, {"style": "at dawn"}]
    assert [(r["ran"], r["reused"], r["missing"]) for r in records] == [(2, 0, 0), (2, 0, 0)]
    assert all(r["estimated_usd"] == pytest.approx(0.84) for r in records)
    first, second = ([res["prompt"] for res in r["results"]] for r in records)  # type: ignore[attr-defined]
    assert first == [
        "A dancer in a red jacket in the rain.",
        "A dancer in a white hoodie in the rain.",
    ]
    assert second[0] == "A dancer in a red jacket at dawn."
    assert not list((out / "runs").glob(".*"))  # no temporary file left behind
    html = (out / "index.html").read_text(encoding="utf-8")
    assert _options(html) == [records[1]["id"], records[0]["id"]]  # newest first
    # the earlier run's cards play its own videos: copies of the cache's blobs, by content
    earlier = re.findall(
        rf'data-run="{records[0]["id"]}".*?src="(\.report/media-[0-9a-f]+\.mp4)"', html, re.S
    )
    assert len(earlier) == 2
    for rel, result in zip(earlier, records[0]["results"], strict=True):  # type: ignore[call-overload]
        assert (out / rel).is_file()
        assert result["video_digest"].removeprefix("blake3:").startswith(rel[14:38])
    assert "A dancer in a red jacket in the rain." in html
    assert "--var style=in the rain" in html


@pytest.mark.slow
def test_a_video_gone_from_the_cache_says_so(two_runs: Project) -> None:
    project = two_runs
    out = project.out("hist")
    earlier = _records(out)[0]
    for result in earlier["results"]:  # type: ignore[attr-defined]
        hexd = result["video_digest"].removeprefix("blake3:")
        blob = project.cache / "blobs" / hexd[:2] / hexd[2:]
        blob.chmod(0o644)
        blob.unlink()
        for copy in (out / ".report").glob(f"media-{hexd[:24]}.mp4"):
            copy.unlink()
    proc = project.cli("report", "hist.yaml")
    assert proc.returncode == 0, proc.stderr
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count("this video is gone: it is no longer in out/ nor in the cache") == 2
    assert len(_options(html)) == 2


@pytest.mark.slow
def test_a_broken_record_is_skipped_with_a_warning(two_runs: Project) -> None:
    project = two_runs
    out = project.out("hist")
    (out / "runs" / "29990101T000000-000000.json").write_text("{not json", encoding="utf-8")
    (out / "runs" / "29990101T000001-000000.json").write_text('{"format": 99}', encoding="utf-8")
    proc = project.cli("report", "hist.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "could not be read" in proc.stderr
    assert "is not a format-1 run record" in proc.stderr
    assert len(_options((out / "index.html").read_text(encoding="utf-8"))) == 2


@pytest.mark.slow
def test_report_alone_writes_no_record(two_runs: Project) -> None:
    project = two_runs
    out = project.out("hist")
    proc = project.cli("report", "hist.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "2 video(s), 1 earlier run(s)" in proc.stdout
    assert len(_records(out)) == 2


# --- the simulated stand-in shows the variant -------------------------------------------------


def _frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24").astype(np.int16)


def _render(dest: Path, prompt: str, details: str) -> np.ndarray:
    asyncio.run(
        render_simulated_video(
            image=ASSETS / "hero.png",
            video=ASSETS / "dance.mp4",
            dest=dest,
            mode="std",
            seconds=0.5,
            keep_original_sound=False,
            label="job_same",
            prompt=prompt,
            details=details,
        )
    )
    return _frame(dest)


@pytest.mark.parametrize("font", ["system", "none"])
def test_simulated_takes_of_different_variants_differ(
    font: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if font == "none":
        monkeypatch.setenv(ENV_FONT, "none")
    red = _render(tmp_path / "red.mp4", "A dancer in a red jacket.", "std · 0.5 s")
    white = _render(tmp_path / "white.mp4", "A dancer in a white hoodie.", "std · 0.5 s")
    again = _render(tmp_path / "again.mp4", "A dancer in a red jacket.", "std · 0.5 s")
    assert red.shape == (720, 1280, 3)
    changed = np.abs(red - white).max(axis=2) > 40
    assert changed.sum() > 200, "two variants' stand-ins look the same"
    # the difference is in the text/bar band under the banner, not in the moving character
    assert changed[: 720 // 2].sum() > 0.9 * changed.sum()
    assert np.abs(red - again).max() < 40  # the same request looks the same


def test_long_prompts_wrap_and_are_cut() -> None:
    lines = wrap_prompt("word " * 100, 30)
    assert len(lines) == 3
    assert all(len(line) <= 30 for line in lines)
    assert lines[-1].endswith("…")
    assert wrap_prompt("two\nlines\tand\x00 nul", 80) == ["two lines and  nul"]


@pytest.mark.slow
def test_a_cached_run_with_other_vars_refreshes_the_gallery(two_runs: Project) -> None:
    """Back to earlier vars, all cached: out/ changes, so the gallery and history follow."""
    project = two_runs
    out = project.out("hist")
    again = project.cli("run", "hist.yaml", "--quiet", "--var", "style=in the rain")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "in the rain" in json.dumps(_records(out)[-1]["overrides"])
    assert len(_records(out)) == 3
    same = project.cli("run", "hist.yaml", "--quiet", "--var", "style=in the rain")
    assert same.returncode == 0 and len(_records(out)) == 3  # nothing new: no new record
