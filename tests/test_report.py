"""The HTML gallery: cards, escaping of user text, relative links only, and the CLI around it."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import Project

from motionflow.report.collect import Card, Gallery
from motionflow.report.render import render_html, script_json

EVIL = "</script><img src=x onerror=alert(1)>"

RECIPE = """\
version: 1
name: gal
provider: simulate
matrix:
  outfit: ["red jacket", "EVIL"]
inputs:
  hero: assets/hero.png
  dance: assets/dance.mp4
stages:
  prompt: {uses: prompt, with: {template: "A dancer in a {{ outfit }} & co."}}
  take:
    uses: kling.motion_control
    takes: TAKES
    with:
      image: ${inputs.hero}
      video: ${inputs.dance}
      prompt: ${stages.prompt.text}
      duration: 3
      character_orientation: video
outputs: [take]
"""


class _Links(HTMLParser):
    """Every URL-bearing attribute, every script, and every element with an on* handler."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.handlers: list[str] = []
        self.tags: list[str] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "poster", "action"} and value is not None:
                self.urls.append(value)
            if name.startswith("on"):
                self.handlers.append(f"{tag} {name}")
        if tag == "script":
            self.scripts.append(dict(attrs))


def _parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def _gallery(prompt: str = EVIL, n: int = 3) -> Gallery:
    cards = [
        Card(
            index=i,
            stage="take",
            variant=f"v{i}",
            label=f"outfit={prompt}",
            matrix={"outfit": prompt if i == 0 else f"o{i}"},
            take=1,
            takes=1,
            video=f"v{i}/take.mp4",
            video_digest=f"blake3:{i:064x}",
            poster=f"v{i}/poster.jpg",
            reference=".report/reference-abc.mp4",
            prompt=prompt,
            settings={"mode": prompt},
            status="new",
            estimated_usd=0.42,
            actual_usd=0.0,
            job_id=prompt,
            simulated=True,
        )
        for i in range(n)
    ]
    axes = {"outfit": [c.matrix["outfit"] for c in cards]}
    return Gallery(recipe="r", provider="simulate", axes=axes, cards=cards)


def _data(html: str) -> dict[str, object]:
    found = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S
    )
    assert found is not None
    data: dict[str, object] = json.loads(found.group(1))
    return data


def test_one_card_per_variant_and_take() -> None:
    html = render_html(_gallery(n=5))
    assert html.count('<article class="card"') == 5
    assert len(_data(html)["cards"]) == 5  # type: ignore[arg-type]


def test_user_text_is_escaped_everywhere() -> None:
    html = render_html(_gallery())
    assert EVIL not in html
    assert "<img" not in html
    page = _parse(html)
    assert page.handlers == []
    assert "img" not in page.tags
    # exactly our two scripts: the JSON data block and the page script
    assert [s.get("type") for s in page.scripts] == ["application/json", None]
    # the data block never closes early, and still holds the text as it was written
    data = _data(html)
    assert data["cards"][0]["matrix"]["outfit"] == EVIL  # type: ignore[index]
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_script_json_escapes_closing_sequences() -> None:
    text = script_json({"a": "</script><!-- & ]]> \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & ]]> \u2028"}


def test_links_are_relative_and_nothing_is_fetched_from_the_network() -> None:
    html = render_html(_gallery(prompt="see https://example.com/x"))
    for url in _parse(html).urls:
        assert not re.match(r"^[a-z][a-z0-9+.-]*:|^/|^\\\\", url, re.I), url
        assert ".." not in url.split("/"), url
    # user text may mention a URL, but only as escaped text: no fetchable link or import
    assert not re.search(r"(src|href|poster)=\"https?:", html)
    assert "@import" not in html and "url(" not in html
    without_user_text = render_html(_gallery(prompt="plain"))
    assert not re.search(r"https?://", without_user_text)


def _recipe(project: Project, takes: int = 1) -> Path:
    body = RECIPE.replace("EVIL", EVIL.replace('"', '\\"')).replace("TAKES", str(takes))
    return project.write("gal.yaml", body)


@pytest.mark.slow
def test_run_writes_the_gallery_with_takes_and_escaped_prompts(project: Project) -> None:
    _recipe(project, takes=2)
    proc = project.cli("run", "gal.yaml", "-q")
    assert proc.returncode == 0, proc.stderr
    index = project.out("gal") / "index.html"
    html = index.read_text(encoding="utf-8")
    assert html.count('<article class="card"') == 4  # 2 variants x 2 takes
    assert EVIL not in html and "<img" not in html
    assert "&amp; co." in html
    for url in _parse(html).urls:
        assert (index.parent / url.replace("%20", " ")).is_file(), url
    assert html.count('class="badge new"') == 4
    assert not re.search(r"https?://", html)


def _shown(html: str) -> str:
    """The cards the page shows first (the current run): earlier runs' cards start hidden."""
    cards = re.findall(r"<article class=\"card\"[^>]*>.*?</article>", html, re.S)
    return "".join(c for c in cards if not c.split(">", 1)[0].endswith(" hidden"))


@pytest.mark.slow
def test_new_and_cached_follow_the_last_run(project: Project) -> None:
    recipe = _recipe(project)
    assert project.cli("run", "gal.yaml", "-q").returncode == 0
    recipe.write_text(recipe.read_text().replace('"red jacket"', '"red jacket", "blue cape"'))
    proc = project.cli("run", "gal.yaml", "-q")
    assert proc.returncode == 0, proc.stderr
    html = (project.out("gal") / "index.html").read_text(encoding="utf-8")
    assert _shown(html).count('class="badge new"') == 1
    assert _shown(html).count('class="badge cached"') == 2
    # the first run stays on the page (hidden until picked): its two results were new then
    assert html.count('<article class="card"') == 5
    assert html.count('class="badge new"') == 3
    # `motionflow report` alone keeps the last run's view
    again = project.cli("report", "gal.yaml")
    assert again.returncode == 0, again.stderr
    assert "wrote" in again.stdout
    assert (project.out("gal") / "index.html").read_text(encoding="utf-8") == html


@pytest.mark.slow
def test_no_report_and_report_failures(project: Project) -> None:
    _recipe(project)
    proc = project.cli("run", "gal.yaml", "-q", "--no-report")
    assert proc.returncode == 0, proc.stderr
    index = project.out("gal") / "index.html"
    assert not index.exists()
    index.mkdir()  # the page cannot be written: a warning, not a failed run
    proc = project.cli("run", "gal.yaml", "-q", "--recheck")
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr and "report was not written" in proc.stderr
    index.rmdir()
    proc = project.cli("report", "gal.yaml")
    assert proc.returncode == 0, proc.stderr
    assert index.read_text(encoding="utf-8").count('<article class="card"') == 2


def test_report_of_a_recipe_never_run_shows_missing_cards(project: Project) -> None:
    _recipe(project)
    proc = project.cli("report", "gal.yaml")
    assert proc.returncode == 0, proc.stderr
    html = (project.out("gal") / "index.html").read_text(encoding="utf-8")
    assert html.count('class="badge missing"') == 2
    assert "2 not made yet" in proc.stdout
