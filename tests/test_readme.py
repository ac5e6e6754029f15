"""The README's quick start, as a newcomer copies it: its command blocks, run from a fresh copy.

The commands are read from README.md (its "Quick start" section), never copied here, so an edit
to the README is tested as written. Block one (a venv, ``pip install -e .``, the quick start
recipe) runs for real in a fresh virtual environment under tmp_path; the second run must print
the README's "Nothing to do" line. Block two (``pip install -e ".[dev]" && pytest``) is not run
here: it would run this suite inside itself; .ci/run runs it, and the tests below check that
.ci/run contains every README line verbatim and that the dev extra brings what ``addopts`` needs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

README = REPO / "README.md"
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "out", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "test-artifacts"
)
OFFLINE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Network is unreachable|No route to host"
)


def quick_start() -> str:
    """The README's "Quick start" section."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Quick start' section"
    return match.group(1)


def console_blocks(section: str) -> list[str]:
    return re.findall(r"^```console\n(.*?)^```", section, re.MULTILINE | re.DOTALL)


def command_blocks() -> tuple[list[str], list[str]]:
    """The two blocks a newcomer copies: set-up and quick start, then the tests."""
    blocks = [b for b in console_blocks(quick_start()) if not b.startswith("$ ")]
    assert len(blocks) == 2, (
        "the README's quick start should have exactly two command blocks (set-up, tests); "
        f"found {len(blocks)}: update tests/test_readme.py with the README"
    )
    setup, tests = ([line for line in b.splitlines() if line.strip()] for b in blocks)
    return setup, tests


def promised_rerun() -> tuple[str, str]:
    """The README's shown re-run: the command after ``$ `` and the line it prints."""
    shown = [b for b in console_blocks(quick_start()) if b.startswith("$ ")]
    assert len(shown) == 1, "the quick start should show exactly one re-run ($ ...) block"
    command, output = shown[0].splitlines()[:2]
    return command.removeprefix("$ "), output


def test_readme_blocks_have_the_expected_shape() -> None:
    setup, tests = command_blocks()
    assert setup[0].startswith("python3 -m venv .venv && . .venv/bin/activate"), setup
    assert any(line.startswith("pip install -e .") for line in setup), setup
    assert "motionflow run recipes/quickstart.yaml" in setup[-1], setup
    assert tests == ['pip install -e ".[dev]" && pytest'], tests
    assert promised_rerun()[0] == "motionflow run recipes/quickstart.yaml"


def test_ci_runs_the_readme_lines_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    setup, tests = command_blocks()
    for line in [*setup, *tests]:
        assert line in ci, f".ci/run does not run the README line {line!r} as written"
    assert any(line.startswith("export MOTIONFLOW_REQUIRE_BROWSER=1") for line in ci)


def test_the_dev_extra_brings_every_plugin_addopts_uses() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    dev = {
        re.split(r"[<>=\[ ;]", req)[0].lower()
        for req in pyproject["project"]["optional-dependencies"]["dev"]
    }
    addopts = pyproject["tool"]["pytest"]["ini_options"]["addopts"]
    assert "pytest" in dev
    if re.search(r"(^|\s)(-n|--numprocesses)\b", addopts):
        assert "pytest-xdist" in dev, "addopts uses -n: the dev extra must bring pytest-xdist"


@pytest.mark.slow
def test_quick_start_on_a_fresh_copy(tmp_path: Path) -> None:
    """Block one of the README, verbatim, in a fresh venv in a copy of this checkout."""
    setup, _ = command_blocks()
    command, promised = promised_rerun()
    clone = tmp_path / "motionflow"
    shutil.copytree(REPO, clone, ignore=COPY_IGNORE)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not key.startswith("PYTEST")
    }
    # python3 is the interpreter running these tests; the cache is this test's own
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MOTIONFLOW_CACHE"] = str(tmp_path / "cache")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def bash(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )

    first = bash("\n".join(setup))
    if first.returncode != 0 and OFFLINE.search(first.stdout + first.stderr):
        pytest.skip("pip could not reach the package index to install the dependencies")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = clone / "out" / "quickstart"
    assert (out / "sheet.mp4").is_file()
    takes = sorted(out.glob("*/take.mp4"))
    assert len(takes) == 2, sorted(p.name for p in out.iterdir())

    again = bash(f". .venv/bin/activate\n{command}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip() == promised
