"""The gallery in a real browser: Debian's chromium driven by playwright, from file://, offline.

CI installs chromium (.ci/run) and playwright (the dev extra): a missing one fails these tests
rather than skipping them, so the gallery is never silently untested.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ASSETS, REPO, Project

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SMALL = """\
version: 1
name: small
provider: simulate
matrix:
  outfit: [red jacket, white hoodie]
  mode: [std, pro]
inputs:
  hero: assets/hero.png
  dance: assets/dance.mp4
stages:
  still: {uses: image.prepare, with: {src: "${inputs.hero}", fit: pad}}
  clip: {uses: video.prepare, with: {src: "${inputs.dance}", start: 0, duration: 3}}
  prompt: {uses: prompt, with: {template: "A dancer in a {{ outfit }}."}}
  take:
    uses: kling.motion_control
    with:
      image: ${stages.still.image}
      video: ${stages.clip.video}
      prompt: ${stages.prompt.text}
      mode: "{{ mode }}"
      character_orientation: video
      duration: 3
outputs: [take]
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the gallery browser tests need Debian's chromium. "
            "Fix: apt-get install -y --no-install-recommends chromium (as .ci/run does)."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the playwright package is missing: the gallery browser tests need it. "
            'Fix: pip install -e ".[dev]" (do not run `playwright install`: we use '
            f"{CHROMIUM})."
        )
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _project(root: Path) -> Project:
    (root / "proj" / "assets").mkdir(parents=True)
    (root / "proj" / "motionflow.toml").write_text("", encoding="utf-8")
    for name in ("hero.png", "dance.mp4"):
        shutil.copy(ASSETS / name, root / "proj" / "assets" / name)
    return Project(root / "proj", root / "cache")


def _run(project: Project, recipe: str) -> Path:
    proc = project.cli("run", recipe, "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return project.out(Path(recipe).stem) / "index.html"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = _project(tmp_path_factory.mktemp("small"))
    project.write("small.yaml", SMALL)
    return _run(project, "small.yaml")


class Page:
    """A gallery page with its console errors, page errors and network requests recorded."""

    def __init__(self, browser: Any, index: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(index.resolve().as_uri())

    def visible_cards(self) -> int:
        count: int = self.page.evaluate(
            "Array.from(document.querySelectorAll('.card')).filter(c => !c.hidden).length"
        )
        return count

    def play_first(self) -> float:
        seconds: float = self.page.evaluate(
            """async () => {
                const v = document.querySelector('.card:not([hidden]) video.result');
                v.muted = true;
                await v.play();
                await new Promise(r => setTimeout(r, 600));
                return v.currentTime;
            }"""
        )
        return seconds

    def check_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.requests, "the page made no requests at all"
        offline = [u for u in self.requests if not u.startswith("file://")]
        assert offline == [], f"the page reached out to {offline}"


def test_small_gallery_plays_and_filters(browser: Any, small: Path) -> None:
    page = Page(browser, small)
    assert page.page.locator(".card").count() == 4
    assert page.visible_cards() == 4
    assert page.play_first() > 0
    page.page.select_option("select[data-axis=outfit]", "white hoodie")
    assert page.visible_cards() == 2
    page.page.select_option("select[data-axis=mode]", "pro")
    assert page.visible_cards() == 1
    assert "1 of 4 shown" in page.page.inner_text("#count")
    page.page.select_option("select[data-axis=outfit]", "")
    assert page.visible_cards() == 2
    page.check_clean()


def test_sorting_by_cost_puts_pro_first(browser: Any, small: Path) -> None:
    page = Page(browser, small)
    page.page.select_option("#sort", "estimated-desc")
    order = page.page.eval_on_selector_all(
        ".card", "cards => cards.map(c => c.querySelector('strong').textContent)"
    )
    assert [("mode=pro" in label) for label in order] == [True, True, False, False]
    page.page.select_option("#sort", "axis:mode")
    order = page.page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.index)")
    assert order == ["0", "2", "1", "3"]  # std (red, white), then pro (red, white)
    page.check_clean()


def test_compare_plays_chosen_videos_in_sync(browser: Any, small: Path) -> None:
    page = Page(browser, small)
    picks = page.page.locator("input.pick")
    picks.nth(0).check()
    picks.nth(3).check()
    assert page.page.inner_text("#compare-button") == "Compare (2)"
    page.page.click("#compare-button")
    assert page.page.is_visible("#compare")
    # the reference clip, then the two chosen results
    assert page.page.locator("#compare-tiles video").count() == 3
    page.page.click("#compare-play")
    page.page.wait_for_timeout(900)
    times = page.page.eval_on_selector_all(
        "#compare-tiles video", "vs => vs.map(v => v.currentTime)"
    )
    assert min(times) > 0, times
    assert max(times) - min(times) < 0.35, times
    page.page.click("#compare-play")  # pause
    paused = page.page.eval_on_selector_all("#compare-tiles video", "vs => vs.map(v => v.paused)")
    assert all(paused)
    page.page.evaluate(
        """() => { const s = document.getElementById('compare-seek');
                   s.value = '500'; s.dispatchEvent(new Event('input')); }"""
    )
    page.page.wait_for_timeout(300)
    times = page.page.eval_on_selector_all(
        "#compare-tiles video", "vs => vs.map(v => v.currentTime)"
    )
    assert all(abs(t - 1.5) < 0.2 for t in times), times
    page.page.click("#compare-close")
    assert not page.page.is_visible("#compare")
    page.check_clean()


@pytest.mark.slow
def test_sweep_recipe_gallery(browser: Any, tmp_path: Path) -> None:
    """The 20-variant sweep of recipes/sweep.yaml, end to end (about 30-60 s on simulate)."""
    project = _project(tmp_path)
    shutil.copy(REPO / "recipes" / "sweep.yaml", project.root / "sweep.yaml")
    index = _run(project, "sweep.yaml")
    page = Page(browser, index)
    assert page.page.locator(".card").count() == 20
    assert page.page.locator(".badge.new").count() == 20
    posters = page.page.eval_on_selector_all("video.result", "vs => vs.map(v => v.poster)")
    assert all("/poster.jpg" in p for p in posters), posters[:3]  # the recipe's thumbnails
    assert page.play_first() > 0
    page.page.select_option("select[data-axis=outfit]", "white hoodie")
    assert page.visible_cards() == 4
    page.page.select_option("select[data-axis=setting]", "sunny beach")
    assert page.visible_cards() == 1
    page.page.select_option("select[data-axis=setting]", "")
    # to look at it: MOTIONFLOW_TEST_ARTIFACTS=DIR keeps the screenshot; by default it stays
    # in the test's temporary folder (tests never write into the checkout)
    artifacts = Path(os.environ.get("MOTIONFLOW_TEST_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    page.page.screenshot(path=str(artifacts / "report.png"))
    page.check_clean()
