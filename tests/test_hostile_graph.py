"""Hostile graphs (deep chains, long cycles) and the last-resort handler for internal errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from conftest import Project

from motionflow.cli.errors import last_resort
from motionflow.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


def _chain(n: int, *, cycle: bool = False, needs: bool = False) -> str:
    lines = ["version: 1", "name: hostile", "provider: simulate", "stages:"]
    for i in range(n):
        lines += [f"  s{i}:", "    uses: prompt"]
        up = (i + 1) % n if cycle else i - 1
        if up < 0:
            lines.append('    with: {template: "start"}')
        elif needs:
            lines += [f"    needs: [s{up}]", '    with: {template: "x"}']
        else:
            lines.append(f'    with: {{template: "${{stages.s{up}.text}} x"}}')
    lines.append(f"outputs: [s{0 if cycle else n - 1}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("needs", [False, True], ids=["refs", "needs"])
def test_a_1500_deep_chain_validates(project: Project, needs: bool) -> None:
    project.write("deep.yaml", _chain(1500, needs=needs))
    proc = project.cli("validate", "deep.yaml")
    assert "Traceback" not in proc.stderr
    assert "RecursionError" not in proc.stderr
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1500 stage(s)" in proc.stdout


def test_a_2000_stage_cycle_is_a_located_error(project: Project) -> None:
    project.write("cycle.yaml", _chain(2000, cycle=True))
    proc = project.cli("validate", "cycle.yaml")
    assert "Traceback" not in proc.stderr
    assert "RecursionError" not in proc.stderr
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "stages form a cycle: s0 -> s1 -> s2 -> " in proc.stderr
    assert "s1998 -> s1999 -> s0" in proc.stderr
    assert "cycle.yaml:" in proc.stderr  # file:line


def test_a_short_cycle_is_named_once_and_located(project: Project) -> None:
    project.write("cycle.yaml", _chain(3, cycle=True))
    proc = project.cli("validate", "cycle.yaml")
    assert proc.returncode == 2
    assert proc.stderr.count("stages form a cycle: s0 -> s1 -> s2 -> s0") == 1
    assert "cycle.yaml:5:" in proc.stderr  # the s0: key


SECRET = "sk-empirio-0123456789abcdef"

# A command that fails with an exception nothing handles, reached through the real entry point.
_BROKEN = textwrap.dedent(
    """
    import os
    import click
    from motionflow import cli

    @cli.main.command("explode")
    def explode() -> None:
        raise RuntimeError("boom with " + os.environ["EMPIRIOLABS_API_KEY"] + "\\nsecond line")

    cli.main()
    """
)


def _explode(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "MOTIONFLOW_DEBUG"}
    full_env.update(EMPIRIOLABS_API_KEY=SECRET, **env)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", _BROKEN, "explode"],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_an_internal_error_is_one_redacted_line_and_exit_70(tmp_path: Path) -> None:
    proc = _explode(tmp_path)
    assert proc.returncode == 70, proc.stderr
    assert "Traceback" not in proc.stderr
    assert SECRET not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("internal error: RuntimeError: boom with [redacted] second line;")
    assert "this is a bug in motionflow: please report it" in lines[0]
    assert "motionflow --version" in lines[0]


def test_motionflow_debug_shows_the_traceback_redacted(tmp_path: Path) -> None:
    proc = _explode(tmp_path, MOTIONFLOW_DEBUG="1")
    assert proc.returncode == 70
    assert "Traceback" in proc.stderr
    assert SECRET not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("internal error: RuntimeError:")


def test_last_resort_turns_an_exception_into_exit_70(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOTIONFLOW_DEBUG", raising=False)

    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(SystemExit) as exited:
        last_resort(boom)
    assert exited.value.code == 70
    err = capsys.readouterr().err
    assert err.startswith("internal error: KeyError: 'x'; this is a bug in motionflow")


@pytest.mark.parametrize(
    "exc",
    [KeyboardInterrupt(), SystemExit(3), click.UsageError("bad"), click.exceptions.Exit(0)],
    ids=["interrupt", "exit", "click-usage", "click-exit"],
)
def test_last_resort_lets_interrupts_exits_and_click_through(exc: BaseException) -> None:
    def raising() -> None:
        raise exc

    with pytest.raises(type(exc)):
        last_resort(raising)


def test_last_resort_reports_a_motionflow_error_as_usual(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def raising() -> None:
        raise UsageError("a bad option")

    with pytest.raises(SystemExit) as exited:
        last_resort(raising)
    assert exited.value.code == 2
    assert "internal error" not in capsys.readouterr().err


def test_last_resort_returns_the_value() -> None:
    assert last_resort(lambda: 42) == 42
