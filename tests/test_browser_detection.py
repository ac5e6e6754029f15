"""Which Chromium the browser tests drive, and when they skip or fail: no browser needed."""

from __future__ import annotations

import stat
from pathlib import Path

from conftest import (
    CHROMIUM_ENV,
    REQUIRE_BROWSER_ENV,
    browser_verdict,
    find_chromium,
    playwright_browsers,
)


def nothing_on_path(name: str) -> str | None:
    return None


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_env_var_wins_over_everything(tmp_path: Path) -> None:
    mine = executable(tmp_path / "my-chrome")
    env = {CHROMIUM_ENV: str(mine)}
    assert find_chromium(env, which=lambda name: f"/opt/{name}", home=tmp_path) == mine
    assert browser_verdict(mine, True, env) == ("run", str(mine))


def test_an_env_var_naming_no_file_fails_even_without_require(tmp_path: Path) -> None:
    env = {CHROMIUM_ENV: str(tmp_path / "nowhere")}
    chromium = find_chromium(env, which=nothing_on_path, home=tmp_path)
    verdict, message = browser_verdict(chromium, True, env)
    assert verdict == "fail"
    assert "nowhere" in message
    assert "sudo apt-get install chromium" in message


def test_path_is_searched_in_order() -> None:
    on_path = {"chromium-browser": "/snap/bin/chromium-browser", "google-chrome": "/usr/bin/gc"}
    assert find_chromium({}, which=on_path.get) == Path("/snap/bin/chromium-browser")
    assert find_chromium({}, which={"google-chrome": "/usr/bin/gc"}.get) == Path("/usr/bin/gc")
    assert find_chromium({}, which={"chromium": "/a/chromium", **on_path}.get) == Path(
        "/a/chromium"
    )


def test_debian_then_playwrights_own_download(tmp_path: Path) -> None:
    debian = tmp_path / "usr/bin/chromium"
    assert playwright_browsers({}, tmp_path) == []
    assert find_chromium({}, which=nothing_on_path, home=tmp_path, debian=debian) is None
    old = executable(tmp_path / ".cache/ms-playwright/chromium-1100/chrome-linux/chrome")
    new = executable(tmp_path / ".cache/ms-playwright/chromium-1200/chrome-linux64/chrome")
    assert playwright_browsers({}, tmp_path) == [new, old]
    assert find_chromium({}, which=nothing_on_path, home=tmp_path, debian=debian) == new
    executable(debian)
    assert find_chromium({}, which=nothing_on_path, home=tmp_path, debian=debian) == debian


def test_playwright_browsers_path_is_honoured(tmp_path: Path) -> None:
    shell = executable(tmp_path / "pw/chromium_headless_shell-1200/chrome-linux/headless_shell")
    assert playwright_browsers({"PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "pw")}, tmp_path) == [
        shell
    ]
    assert playwright_browsers({"PLAYWRIGHT_BROWSERS_PATH": "0"}, tmp_path) == []


def test_no_browser_skips_with_the_install_hint() -> None:
    verdict, message = browser_verdict(None, True, {})
    assert verdict == "skip"
    assert "sudo apt-get install chromium" in message
    assert "python -m playwright install chromium" in message


def test_no_playwright_skips_with_the_pip_hint(tmp_path: Path) -> None:
    verdict, message = browser_verdict(executable(tmp_path / "chromium"), False, {})
    assert verdict == "skip"
    assert 'pip install -e ".[dev]"' in message


def test_ci_turns_a_missing_browser_into_a_failure(tmp_path: Path) -> None:
    ci = {REQUIRE_BROWSER_ENV: "1"}
    assert browser_verdict(None, True, ci)[0] == "fail"
    assert REQUIRE_BROWSER_ENV in browser_verdict(None, True, ci)[1]
    assert browser_verdict(executable(tmp_path / "c"), False, ci)[0] == "fail"
    assert browser_verdict(None, True, {REQUIRE_BROWSER_ENV: "0"})[0] == "skip"


def test_a_present_browser_runs_with_or_without_ci(tmp_path: Path) -> None:
    chromium = executable(tmp_path / "chromium")
    assert browser_verdict(chromium, True, {})[0] == "run"
    assert browser_verdict(chromium, True, {REQUIRE_BROWSER_ENV: "1"})[0] == "run"
