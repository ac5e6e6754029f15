"""A recipe 1,500 stages deep: validate, plan, dag and run as a user sees them, and a cycle in it."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import Project

DEPTH = 1500


def _chain(n: int, *, cycle_at: int | None = None) -> str:
    """``n`` prompt stages, each templating the previous one's text; with ``cycle_at``, the
    stage there reads the stage two further on, closing a 3-stage cycle inside the chain."""
    lines = ["version: 1", "name: deep", "provider: simulate", "stages:"]
    for i in range(n):
        up = i + 2 if i == cycle_at else i - 1
        template = "start" if up < 0 else f"${{stages.s{up}.text}} x"
        lines += [f"  s{i}:", "    uses: prompt", f'    with: {{template: "{template}"}}']
    lines.append(f"outputs: [s{n - 1}]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def deep(project: Project) -> Project:
    project.write("deep.yaml", _chain(DEPTH))
    return project


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "RecursionError" not in proc.stderr
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_a_deep_chain_validates(deep: Project) -> None:
    out = _ok(deep.cli("validate", "deep.yaml"))
    assert f"{DEPTH} stage(s), {DEPTH} stage instance(s)" in out


def test_a_deep_chain_plans_in_order(deep: Project) -> None:
    out = _ok(deep.cli("plan", "deep.yaml"))
    assert out.index("s0 ") < out.index("s1 ") < out.index(f"s{DEPTH - 1} ")


def test_a_deep_chain_plans_a_targeted_stage_with_all_it_needs(deep: Project) -> None:
    out = _ok(deep.cli("plan", "deep.yaml", "--stage", f"s{DEPTH - 1}"))
    assert f"{DEPTH} stage instance(s)" in out


def test_a_deep_chain_draws_its_dag(deep: Project) -> None:
    data = json.loads(_ok(deep.cli("dag", "deep.yaml", "--json")))
    assert [n["id"] for n in data["nodes"]] == [f"s{i}" for i in range(DEPTH)]
    assert len(data["edges"]) == DEPTH - 1
    text = _ok(deep.cli("dag", "deep.yaml"))
    assert f"s{DEPTH - 1} (prompt) x1  (output)\n  <- s{DEPTH - 2}" in text


@pytest.mark.slow  # ~4 s alone, more on a busy machine
def test_a_deep_chain_runs_then_is_all_cached(deep: Project) -> None:
    _ok(deep.cli("run", "deep.yaml"))
    assert (deep.out("deep") / "default" / f"s{DEPTH - 1}.txt").is_file()
    again = _ok(deep.cli("run", "deep.yaml"))
    assert f"all {DEPTH} stage instances reused from the cache" in again


def test_a_3_stage_cycle_in_a_deep_chain_is_refused_by_name(project: Project) -> None:
    project.write("cycle.yaml", _chain(DEPTH, cycle_at=700))
    for command in ("validate", "run"):
        proc = project.cli(command, "cycle.yaml")
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.returncode == 2, (command, proc.stderr[-2000:])
        assert proc.stderr.count("stages form a cycle: s700 -> s702 -> s701 -> s700") == 1
        assert f"cycle.yaml:{5 + 3 * 700}:" in proc.stderr  # file:line of the s700: key
