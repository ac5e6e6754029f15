"""Shared fixtures: a throwaway project with the sample assets, and the CLI as a subprocess.

Also where the browser tests find a Chromium (``find_chromium``, ``browser_verdict``) and the
session check that a test run leaves nothing new in the checkout (``pytest_sessionfinish``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from hostile.corpus import SMALL

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "recipes" / "assets"


@dataclass
class Project:
    """A project folder (with motionflow.toml) and its own cache directory."""

    root: Path
    cache: Path

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``motionflow ARGS`` as a user would, in the project folder."""
        full_env = {**os.environ, "MOTIONFLOW_CACHE": str(self.cache), **(env or {})}
        return subprocess.run(
            [sys.executable, "-c", "from motionflow.cli import main; main()", *args],
            cwd=self.root,
            env=full_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def run_json(self, *args: str) -> dict[str, Any]:
        proc = self.cli("run", *args, "--json")
        assert "Traceback" not in proc.stderr, proc.stderr
        data: dict[str, Any] = json.loads(proc.stdout)
        data["_exit"] = proc.returncode
        data["_stderr"] = proc.stderr
        return data

    def plan_json(self, *args: str) -> dict[str, Any]:
        proc = self.cli("plan", *args, "--json")
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def out(self, recipe: str) -> Path:
        return self.root / "out" / recipe


SMALL_RECIPE = SMALL
"""Two simulated generations and their prompts: the smallest paid recipe (tests of plans; it
is the corpus's base recipe too, ``tests/hostile/corpus.py``, which runs without pytest)."""

TINY_RECIPE = """\
version: 1
name: tiny
provider: simulate
vars: {style: "a dancer"}
inputs: {hero: assets/hero.png, dance: assets/dance.mp4}
stages:
  prompt: {uses: prompt, with: {template: "{{ style }} on a rooftop"}}
  take:
    uses: kling.motion_control
    with:
      image: "${inputs.hero}"
      video: "${inputs.dance}"
      prompt: "${stages.prompt.text}"
      character_orientation: video
      duration: 3
  still: {uses: image.prepare, with: {src: "${inputs.hero}"}}
outputs: [take, still]
"""
"""A prompt, a simulated generation and a prepared image: the cache tools' test recipe."""


def repaint(image: Path) -> None:
    """Overwrite ``image`` with a plain blue 400x600 picture (a changed input)."""
    from motionflow.media.ffmpeg import find_ffmpeg

    command = [find_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=blue:s=400x600"]
    subprocess.run([*command, "-frames:v", "1", str(image)], check=True)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """One S3 endpoint (moto's server on loopback) for the whole module: tests/s3rig.py."""
    pytest.importorskip("moto", reason="install the dev extra: pip install -e '.[dev]'")
    from s3rig import moto_endpoint

    with moto_endpoint() as url:
        yield url


@pytest.fixture
def endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The S3 endpoint, with fake credentials and nothing from the user's AWS setup."""
    from s3rig import use_fake_aws

    use_fake_aws(monkeypatch, tmp_path)
    return moto_server


@pytest.fixture
def bucket(endpoint: str) -> str:
    """A fresh, empty bucket on the S3 endpoint."""
    from s3rig import new_bucket

    return new_bucket(endpoint)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return new_project(tmp_path)


def new_project(base: Path) -> Project:
    """A project folder under ``base`` with the sample assets, and its own cache beside it."""
    root = base / "proj"
    (root / "assets").mkdir(parents=True)
    (root / "motionflow.toml").write_text("", encoding="utf-8")
    for name in ("hero.png", "dance.mp4"):
        shutil.copy(ASSETS / name, root / "assets" / name)
    return Project(root, base / "cache")


def clone_into(source: Project, project: Project) -> Project:
    """Make ``project`` a copy of ``source``: its folder and its cache, at the test's own paths.

    For tests that start from the same finished run: the module runs it once (a run costs
    seconds) and every test gets its own copy to change.
    """
    shutil.rmtree(project.root)
    shutil.copytree(source.root, project.root, symlinks=True)
    shutil.copytree(source.cache, project.cache, symlinks=True)
    return project


@pytest.fixture
def files_under() -> Callable[[Path], dict[str, tuple[int, int]]]:
    """Snapshot of (size, mtime_ns) of every file under a folder."""

    def snap(folder: Path) -> dict[str, tuple[int, int]]:
        return {
            str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    return snap


@pytest.fixture
def service(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The paid-run rig of ``service.py``: the fake EmpirioLabs server and a static host.

    ``@pytest.mark.fake(...)`` passes FakeConfig settings (``faults=Faults(...)``).
    """
    from service import make_service, new_project

    marker = request.node.get_closest_marker("fake")
    config = dict(marker.kwargs) if marker else {}
    root, cache = new_project(tmp_path)
    svc = make_service(root, cache, **config)
    try:
        yield svc
    finally:
        svc.static.stop()
        svc.fake.stop()


# --- a Chromium for the browser tests --------------------------------------------------------

CHROMIUM_ENV = "MOTIONFLOW_CHROMIUM"
"""A Chromium executable to use; when set, it must exist (no fallback to a search)."""

REQUIRE_BROWSER_ENV = "MOTIONFLOW_REQUIRE_BROWSER"
"""Set to 1 (as .ci/run does) and a missing browser fails the browser tests instead of skipping."""

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
BROWSER_HINT = (
    "install one with `sudo apt-get install chromium` (Debian/Ubuntu) or "
    "`python -m playwright install chromium`, or point MOTIONFLOW_CHROMIUM at a Chromium "
    "executable"
)


def playwright_browsers(env: Mapping[str, str], home: Path) -> list[Path]:
    """Chromium executables downloaded by ``playwright install chromium``, newest first."""
    setting = env.get("PLAYWRIGHT_BROWSERS_PATH", "")
    if setting == "0":
        return []  # browsers inside the playwright package: let playwright find those itself
    root = Path(setting) if setting else home / ".cache" / "ms-playwright"
    found = [
        *root.glob("chromium-*/chrome-*/chrome"),
        *root.glob("chromium_headless_shell-*/chrome-*/headless_shell"),
    ]
    return sorted((p for p in found if p.is_file()), key=lambda p: p.parent.parent.name)[::-1]


def find_chromium(
    env: Mapping[str, str],
    which: Callable[[str], str | None] = shutil.which,
    home: Path | None = None,
    debian: Path = DEBIAN_CHROMIUM,
) -> Path | None:
    """The Chromium to drive: $MOTIONFLOW_CHROMIUM, then PATH, Debian's, playwright's own."""
    if env.get(CHROMIUM_ENV):
        return Path(env[CHROMIUM_ENV])  # checked by browser_verdict: a wrong setting is an error
    for name in CHROMIUM_NAMES:
        hit = which(name)
        if hit:
            return Path(hit)
    if debian.is_file():
        return debian
    downloaded = playwright_browsers(env, home if home is not None else Path.home())
    return downloaded[0] if downloaded else None


def browser_verdict(
    chromium: Path | None, has_playwright: bool, env: Mapping[str, str]
) -> tuple[Literal["run", "skip", "fail"], str]:
    """Whether the browser tests run, skip (a fresh machine) or fail (CI, or a wrong setting)."""
    if env.get(CHROMIUM_ENV) and (chromium is None or not chromium.is_file()):
        msg = f"{CHROMIUM_ENV}={env[CHROMIUM_ENV]!r} is not a file; {BROWSER_HINT}"
        return "fail", msg
    if not has_playwright:
        problem = 'the playwright package is missing; install it with pip install -e ".[dev]"'
    elif chromium is None:
        problem = f"no Chromium found (PATH: {', '.join(CHROMIUM_NAMES)}; {DEBIAN_CHROMIUM}; "
        problem += f"playwright's downloads); {BROWSER_HINT}"
    else:
        return "run", str(chromium)
    if env.get(REQUIRE_BROWSER_ENV, "") not in ("", "0"):
        return "fail", f"{problem} ({REQUIRE_BROWSER_ENV} is set: the browser tests must run)"
    return "skip", f"browser tests skipped: {problem}"


def chromium_or_skip() -> Path:
    """The Chromium of this machine, or skip (fail under MOTIONFLOW_REQUIRE_BROWSER=1)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        has_playwright = False
    else:
        has_playwright = True
    verdict, message = browser_verdict(find_chromium(os.environ), has_playwright, os.environ)
    if verdict == "fail":
        pytest.fail(message)
    if verdict == "skip":
        pytest.skip(message)
    return Path(message)


# --- tests write only under their temporary folders -------------------------------------------

CACHE_DIRS = {"__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache", ".venv"}
SOURCE_DIRS = {"motionflow", "tests", "docs", "scripts", "benchmarks", "recipes"}


def checkout_extras() -> dict[str, bool] | None:
    """Untracked paths of the checkout, True when ignored; caches aside; None without git."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        return None
    status = ["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "-z"]
    proc = subprocess.run(
        [*status, "--", ".", ":(exclude).venv", ":(exclude)*.egg-info", ":(exclude).coverage*"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    entries = [e for e in proc.stdout.split("\0") if e[:2] in ("??", "!!")]
    return {e[3:]: e[:2] == "!!" for e in entries if not CACHE_DIRS.intersection(Path(e[3:]).parts)}


_EXTRAS = pytest.StashKey[dict[str, bool] | None]()


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the xdist controller, or a serial run
        session.config.stash[_EXTRAS] = checkout_extras()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if it left files in the checkout: out/, test-artifacts/, anything ignored.

    A new untracked file in a source folder (a test you are writing while the suite runs) is
    only mentioned: telling it apart from a test's output would need a guess.
    """
    before = session.config.stash.get(_EXTRAS, None)
    if before is None or hasattr(session.config, "workerinput"):
        return
    new = {p: ignored for p, ignored in (checkout_extras() or {}).items() if p not in before}
    left = sorted(p for p, ign in new.items() if ign or Path(p).parts[0] not in SOURCE_DIRS)
    authored = sorted(set(new) - set(left))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if authored and reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("-", f"new untracked files during the run (yours?): {authored[:5]}")
    if left:
        shown = "\n  ".join(left[:20]) + ("\n  ..." if len(left) > 20 else "")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_sep("=", "tests wrote into the checkout", red=True)
            reporter.write_line(
                f"the test session left {len(left)} new file(s) in {REPO}; tests must write "
                f"under tmp_path (docs/testing.md), then delete these:\n  {shown}",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


#: The files that take longest (``pytest --durations=0``, summed per file), longest first.
#: pytest-xdist hands whole files (``--dist loadfile``) to workers in collection order (with
#: ``--no-loadscope-reorder``; by default it puts the files with most tests first), so starting
#: these first keeps one worker from finishing a long file alone at the end. Order only
#: changes the wall time of a run, never its results.
LONG_FILES = (
    "test_money_model.py",
    "test_team_flight.py",
    "test_generation.py",
    "test_hostile_corpus.py",
    "test_doubt_and_loss.py",
    "test_report_browser.py",
    "test_reliability.py",
    "test_money_path.py",
    "test_remote_cache.py",
    "test_run.py",
    "test_dask.py",
    "test_cache_manage.py",
    "test_hostile_cache.py",
    "test_targets.py",
    "test_hostile_env.py",
    "test_hostile_import.py",
    "test_progress.py",
    "test_key_and_clock.py",
    "test_readme.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = {name: rank for rank, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: first.get(item.path.name, len(LONG_FILES)))  # stable


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core, plus one.

    Many tests spend seconds waiting on the fake service (queued jobs, retention windows,
    heartbeats) rather than computing: the extra worker fills those waits (docs/testing.md).
    """
    return (os.cpu_count() or 1) + 1
