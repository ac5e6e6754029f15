"""The gallery in a real browser: a Chromium driven by playwright, from file://, offline.

Which Chromium, and what happens without one, is ``conftest.chromium_or_skip``: on a fresh
machine these tests skip with the install hint; CI installs Debian's chromium (.ci/run) and sets
MOTIONFLOW_REQUIRE_BROWSER=1, under which a missing browser fails them rather than skipping, so
the gallery is never silently untested.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, Project, chromium_or_skip, new_project

# a real run and a real browser: seconds each, so out of the fast subset (-m "not slow")
pytestmark = pytest.mark.slow

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
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(chromium), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _run(project: Project, recipe: str) -> Path:
    proc = project.cli("run", recipe, "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return project.out(Path(recipe).stem) / "index.html"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = new_project(tmp_path_factory.mktemp("small"))
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
    project = new_project(tmp_path)
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


# --- run history, favourites, grid view (issue 11) --------------------------------------------

HISTORY = SMALL.replace("matrix:", 'vars: {style: "on a roof"}\nmatrix:').replace(
    "A dancer in a {{ outfit }}.", "A dancer in a {{ outfit }} {{ style }}."
)


def _artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $MOTIONFLOW_TEST_ARTIFACTS, else the test's temporary folder."""
    folder = Path(os.environ.get("MOTIONFLOW_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2x2 recipe run twice: a draft `--var style=...`, then another style."""
    project = new_project(tmp_path_factory.mktemp("history"))
    project.write("small.yaml", HISTORY)
    for style in ("in the rain", "at dawn"):
        proc = project.cli("run", "small.yaml", "--quiet", "--var", f"style={style}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return project.out("small") / "index.html"


def _shown_srcs(page: Page) -> list[str]:
    srcs: list[str] = page.page.eval_on_selector_all(
        ".card:not([hidden]) video.result", "vs => vs.map(v => v.getAttribute('src'))"
    )
    return srcs


def test_earlier_runs_stay_and_compare_across_runs(
    browser: Any, history: Path, tmp_path: Path
) -> None:
    page = Page(browser, history)
    runs = page.page.eval_on_selector_all("#run option", "os => os.map(o => o.textContent)")
    assert len(runs) == 2
    assert "(latest)" in runs[0] and "--var style=at dawn" in runs[0] and "4 ran" in runs[0]
    assert "--var style=in the rain" in runs[1]
    latest = _shown_srcs(page)
    assert page.visible_cards() == 4
    page.page.locator(".card:not([hidden]) input.pick").nth(0).check()
    values = page.page.eval_on_selector_all("#run option", "os => os.map(o => o.value)")
    page.page.select_option("#run", values[1])
    assert page.visible_cards() == 4
    earlier = _shown_srcs(page)
    assert all(src.startswith(".report/media-") for src in earlier), earlier
    assert not set(earlier) & set(latest)
    prompts = page.page.eval_on_selector_all(
        ".card:not([hidden]) .prompt", "ps => ps.map(p => p.textContent)"
    )
    assert prompts[0] == "A dancer in a red jacket in the rain."
    assert page.play_first() > 0  # an earlier run's video plays
    page.page.locator(".card:not([hidden]) input.pick").nth(0).check()
    page.page.click("#compare-button")
    captions = page.page.eval_on_selector_all(
        "#compare-tiles figcaption", "fs => fs.map(f => f.textContent)"
    )
    assert captions[0] == "reference clip"
    assert len(captions) == 3 and all(" · run " in c for c in captions[1:]), captions
    # the control bar is the overlay's own, opaque: nothing of the page shows through it
    hit = page.page.evaluate(
        """() => { const bar = document.querySelector('#compare .bar').getBoundingClientRect();
                   const el = document.elementFromPoint(bar.left + bar.width / 2, bar.top + 4);
                   return [el.closest('#compare') !== null,
                           getComputedStyle(document.querySelector('#compare .bar'))
                             .backgroundColor]; }"""
    )
    assert hit[0] is True
    assert hit[1] not in ("transparent", "rgba(0, 0, 0, 0)")
    page.page.wait_for_timeout(500)  # posters drawn
    page.page.screenshot(path=str(_artifacts(tmp_path) / "gallery-compare.png"))
    page.page.click("#compare-close")
    page.check_clean()


def test_favourites_give_the_final_command(browser: Any, history: Path) -> None:
    context = browser.new_context()  # one browser profile: localStorage survives a reload
    try:
        page = context.new_page()
        page.goto(history.resolve().as_uri())
        assert not page.is_visible("#promote")
        stars = page.locator(".card:not([hidden]) button.fav")
        stars.nth(0).click()  # red jacket, std (matrix order: red std, red pro, white std, ...)
        stars.nth(2).click()  # white hoodie, std
        assert page.get_attribute(".card:not([hidden]) button.fav >> nth=0", "aria-pressed") == (
            "true"
        )
        command = page.inner_text("#promote-command").strip()
        assert command == "motionflow plan small.yaml --only mode=std --var 'style=at dawn'"
        page.fill("#changes", "mode=pro style=neon")
        command = page.inner_text("#promote-command").strip()
        assert command == "motionflow plan small.yaml --only mode=pro --var style=neon"
        page.reload()
        assert page.inner_text("#promote-title") == "Favourites: 2 takes"
        stars = page.locator(".card:not([hidden]) button.fav")
        stars.nth(2).click()  # keep only red jacket, std; add white hoodie, pro
        stars.nth(3).click()
        page.fill("#changes", "")
        lines = page.inner_text("#promote-command").strip().splitlines()
        assert lines == [
            "motionflow plan small.yaml --only mode=std --only 'outfit=red jacket'"
            " --var 'style=at dawn'",
            "motionflow plan small.yaml --only mode=pro --only 'outfit=white hoodie'"
            " --var 'style=at dawn'",
        ]
    finally:
        context.close()


def test_grid_view_rows_by_columns(browser: Any, history: Path, tmp_path: Path) -> None:
    page = Page(browser, history)
    page.page.select_option("#view", "grid")
    assert not page.page.is_visible("#grid")
    heads = page.page.eval_on_selector_all("#matrix thead th", "ts => ts.map(t => t.textContent)")
    rows = page.page.eval_on_selector_all("#matrix tbody th", "ts => ts.map(t => t.textContent)")
    assert heads[1:] == ["std", "pro"]
    assert rows == ["red jacket", "white hoodie"]
    assert page.page.locator("#matrix td video").count() == 4
    page.page.select_option("#rows", "mode")
    page.page.select_option("#columns", "outfit")
    heads = page.page.eval_on_selector_all("#matrix thead th", "ts => ts.map(t => t.textContent)")
    assert heads[1:] == ["red jacket", "white hoodie"]
    page.page.locator("#matrix input.cell-pick").nth(0).check()
    assert page.page.inner_text("#compare-button") == "Compare (1)"
    page.page.wait_for_timeout(500)
    page.page.screenshot(path=str(_artifacts(tmp_path) / "gallery-grid.png"), full_page=True)
    page.check_clean()


def test_grid_at_420_px_scrolls_sideways(browser: Any, history: Path, tmp_path: Path) -> None:
    page = Page(browser, history)
    page.page.set_viewport_size({"width": 420, "height": 900})
    page.page.select_option("#view", "grid")
    sizes = page.page.evaluate(
        """() => { const s = document.querySelector('.matrix-scroll');
                   const th = document.querySelector('#matrix tbody th');
                   return { page: document.documentElement.scrollWidth,
                            inner: s.scrollWidth, outer: s.clientWidth,
                            label: parseFloat(getComputedStyle(th).fontSize),
                            labelWidth: th.getBoundingClientRect().width }; }"""
    )
    assert sizes["page"] <= 420, sizes  # the page itself does not overflow
    assert sizes["inner"] > sizes["outer"], sizes  # the grid scrolls sideways instead
    assert sizes["label"] >= 12 and sizes["labelWidth"] >= 80, sizes
    page.page.evaluate("document.querySelector('.matrix-scroll').scrollLeft = 200")
    left = page.page.evaluate(
        "document.querySelector('#matrix tbody th').getBoundingClientRect().left"
    )
    assert 0 <= left < 30  # row labels stay in view while scrolling
    page.page.wait_for_timeout(500)
    page.page.screenshot(path=str(_artifacts(tmp_path) / "gallery-420.png"), full_page=True)
    page.page.select_option("#view", "cards")
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 420
    page.check_clean()
