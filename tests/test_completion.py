"""``motionflow completion SHELL`` prints a working completion script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# prog_name as the installed script has it (under ``python -c`` click would call it "-c")
CLI = [sys.executable, "-c", "from motionflow.cli import main; main(prog_name='motionflow')"]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_shells_script(shell: str) -> None:
    proc = _cli("completion", shell)
    assert proc.returncode == 0, proc.stderr
    assert "_motionflow_completion" in proc.stdout
    assert "_MOTIONFLOW_COMPLETE" in proc.stdout
    assert f"{shell}_complete" in proc.stdout


def test_the_bash_script_parses(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:  # pragma: no cover - every CI image has bash
        pytest.skip("no bash")
    script = tmp_path / "motionflow.bash"
    script.write_text(_cli("completion", "bash").stdout, encoding="utf-8")
    checked = subprocess.run(
        [bash, "-n", str(script)], capture_output=True, text=True, check=False, timeout=60
    )
    assert checked.returncode == 0, checked.stderr


def test_the_script_is_clicks_own() -> None:
    ours = _cli("completion", "bash").stdout.strip()
    clicks = _cli(env={"_MOTIONFLOW_COMPLETE": "bash_source"}).stdout.strip()
    assert ours == clicks


def test_an_unknown_shell_is_a_usage_error() -> None:
    proc = _cli("completion", "tcsh")
    assert proc.returncode == 2 and "tcsh" in proc.stderr


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [
        ("motionflow ca", "1", "plain,cache"),  # a lazily registered group
        ("motionflow cache fo", "2", "plain,forget"),
        ("motionflow compl", "1", "plain,completion"),
        ("motionflow dag --format m", "3", "plain,mermaid"),
    ],
)
def test_the_script_gets_its_candidates_from_motionflow(
    words: str, cword: str, expected: str
) -> None:
    env = {"_MOTIONFLOW_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword}
    proc = _cli(env=env)
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout.splitlines()
