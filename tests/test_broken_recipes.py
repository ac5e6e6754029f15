"""The broken-recipe corpus: every file under ``tests/broken/`` must be refused, usefully.

Requirement: a broken recipe (bad YAML, wrong types, unknown stage kinds, unknown references,
cycles, template errors, paths outside the project, bad stage parameters...) gives exit code 2
and a located, actionable message (``file:line:column: error: message``, then the offending
source line and a caret), reports every mistake at once, and touches neither the cache nor
``out/``: nothing is run or spent.

Each corpus file starts with one or more machine-readable comments::

    # expect: line=12 contains="did you mean 'stages'" contains="..."

``line`` is the 1-based line the error must be reported at (``line=0``: a problem of the whole
file, reported as ``file: error: ...`` with no source line); every ``contains`` must appear in
that diagnostic's message. Files named ``multi_*`` hold several mistakes and must produce exactly
one diagnostic per ``expect`` line.

What runs, to keep the suite fast (~0.5 s per CLI call): the real CLI, as a subprocess, runs
``run`` on every file (``run`` loads, validates and plans before anything executes), and also
``validate`` and ``plan`` on the files in ``ALL_COMMANDS`` (one per stage of checking: YAML,
schema, graph, templates, inputs, stage parameters). All calls are made once, in parallel, by a
module fixture; each file gets a fresh, not-yet-existing ``MOTIONFLOW_CACHE`` (and
``XDG_CACHE_HOME``, to catch writes to the default cache) that must still be absent or empty
after all its commands.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BROKEN_DIR = Path("tests") / "broken"  # relative to REPO: the CLI runs with cwd=REPO
CASES = sorted(p.name for p in (REPO / BROKEN_DIR).glob("*.yaml"))

#: Files also checked with ``validate`` and ``plan`` (every file is checked with ``run``).
ALL_COMMANDS = {
    "yaml_unclosed_quote.yaml",
    "unknown_top_key.yaml",
    "unknown_stage_kind.yaml",
    "sandbox_mro.yaml",
    "input_traversal.yaml",
    "kling_duration_cap.yaml",
    "kling_mode_ultra.yaml",
    "multi_mistakes.yaml",
}

CLI = [sys.executable, "-c", "from motionflow.cli import main; main()"]
QUICKSTART = Path("recipes") / "quickstart.yaml"

_EXPECT = re.compile(r"^#\s*expect:\s*line=(\d+)((?:\s+contains=\"[^\"]*\")*)\s*$")
_CONTAINS = re.compile(r"contains=\"([^\"]*)\"")
_NAME = re.compile(r"^name:\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:#.*)?$", re.MULTILINE)


@dataclass(frozen=True)
class Expect:
    line: int
    contains: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    command: str
    returncode: int
    stdout: str
    stderr: str


@dataclass
class CaseResult:
    outcomes: list[Outcome]
    cache_dirs: list[Path]


def _expectations(name: str) -> list[Expect]:
    text = (REPO / BROKEN_DIR / name).read_text(encoding="utf-8")
    found = []
    for line in text.splitlines():
        if m := _EXPECT.match(line):
            found.append(Expect(int(m.group(1)), tuple(_CONTAINS.findall(m.group(2)))))
    return found


def _recipe_name(name: str) -> str:
    text = (REPO / BROKEN_DIR / name).read_text(encoding="utf-8")
    m = _NAME.search(text)
    return m.group(1) if m else Path(name).stem


def _display(name: str) -> str:
    return (BROKEN_DIR / name).as_posix()


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("FORCE_COLOR", None)
    env.update(
        MOTIONFLOW_CACHE=str(root / "cache"),
        XDG_CACHE_HOME=str(root / "xdg-cache"),
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="240",
    )
    return env


def _run_cli(args: list[str], root: Path) -> Outcome:
    proc = subprocess.run(
        [*CLI, *args],
        cwd=REPO,
        env=_env(root),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Outcome(" ".join(args), proc.returncode, proc.stdout, proc.stderr)


def _untouched(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


@pytest.fixture(scope="module")
def corpus_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CaseResult]:
    """Run every CLI call of the corpus once, in parallel."""
    jobs: list[tuple[str, str, Path]] = []
    roots: dict[str, Path] = {}
    for name in CASES:
        roots[name] = tmp_path_factory.mktemp(Path(name).stem)
        commands = ["validate", "plan", "run"] if name in ALL_COMMANDS else ["run"]
        jobs.extend((name, command, roots[name]) for command in commands)
    workers = max(2, min(8, os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            (name, pool.submit(_run_cli, [command, _display(name)], root))
            for name, command, root in jobs
        ]
        results: dict[str, CaseResult] = {}
        for name, future in futures:
            case = results.setdefault(
                name, CaseResult([], [roots[name] / "cache", roots[name] / "xdg-cache"])
            )
            case.outcomes.append(future.result())
    return results


def _diagnostics(stderr: str, display: str) -> list[tuple[int, int, str, list[str]]]:
    """``(line, column, message, following lines)`` for every ``error:`` of ``display``."""
    head = re.compile(rf"^{re.escape(display)}(?::(\d+):(\d+))?: error: (.*)$")
    lines = stderr.splitlines()
    found = []
    for i, text in enumerate(lines):
        if m := head.match(text):
            line = int(m.group(1) or 0)
            column = int(m.group(2) or 0)
            found.append((line, column, m.group(3), lines[i + 1 : i + 3]))
    return found


def _check_outcome(name: str, outcome: Outcome) -> None:
    display = _display(name)
    source = (REPO / BROKEN_DIR / name).read_text(encoding="utf-8").splitlines()
    shown = f"`motionflow {outcome.command}` stderr:\n{outcome.stderr}\nstdout:\n{outcome.stdout}"
    assert "Traceback" not in outcome.stderr + outcome.stdout, shown
    assert outcome.returncode == 2, f"exit code {outcome.returncode}, want 2\n{shown}"
    diags = _diagnostics(outcome.stderr, display)
    assert diags, f"no `{display}:LINE:COL: error: ...` diagnostic\n{shown}"
    for expect in _expectations(name):
        at_line = [d for d in diags if d[0] == expect.line]
        where = f"{display}:{expect.line}" if expect.line else f"{display} (whole file)"
        assert at_line, f"no error reported at {where}\n{shown}"
        matching = [d for d in at_line if all(s in d[2] for s in expect.contains)]
        assert matching, f"the error at {where} does not say all of {expect.contains}\n{shown}"
        line, column, _message, after = matching[0]
        if line == 0:
            continue
        assert column >= 1, f"no column at {where}\n{shown}"
        want = source[line - 1].rstrip()
        assert after, f"the source line is not shown under the error at {where}\n{shown}"
        assert after[0].rstrip() == "    " + want, (
            f"the line under the error at {where} is {after[0]!r}, want {'    ' + want!r}\n{shown}"
        )
        assert len(after) > 1, f"no caret under the source line at {where}\n{shown}"
        caret = after[1].rstrip()
        assert caret.endswith("^"), f"no caret under the source line at {where}\n{shown}"
        assert caret.strip() == "^", f"bad caret line {caret!r} at {where}\n{shown}"
        assert len(caret) == 4 + column, (
            f"caret at column {len(caret) - 4}, header says {column} ({where})\n{shown}"
        )


def test_corpus_is_well_formed() -> None:
    """Every file states what it expects, at a real line, under a recipe name of its own."""
    assert len(CASES) >= 25
    names: dict[str, str] = {}
    for case in CASES:
        expects = _expectations(case)
        assert expects, f"{case}: no `# expect: line=N contains=...` comment"
        lines = (REPO / BROKEN_DIR / case).read_text(encoding="utf-8").splitlines()
        for expect in expects:
            assert 0 <= expect.line <= len(lines), f"{case}: line={expect.line} is not in the file"
            assert expect.contains, f"{case}: line={expect.line} says nothing about the message"
        recipe = _recipe_name(case)
        assert recipe not in names, f"{case} and {names[recipe]} share the name {recipe!r}"
        names[recipe] = case


@pytest.mark.parametrize("name", CASES)
def test_broken_recipe_is_refused(name: str, corpus_results: dict[str, CaseResult]) -> None:
    """Exit 2, no traceback, each expected error located with its source line and caret."""
    case = corpus_results[name]
    for outcome in case.outcomes:
        _check_outcome(name, outcome)


@pytest.mark.parametrize("name", CASES)
def test_broken_recipe_touches_nothing(name: str, corpus_results: dict[str, CaseResult]) -> None:
    """After validate/plan/run, the cache is absent or empty and no out/ folder was made."""
    case = corpus_results[name]
    for folder in case.cache_dirs:
        assert _untouched(folder), (
            f"{name}: {folder.name} was written: {sorted(p.name for p in folder.rglob('*'))}"
        )
    out = REPO / "out" / _recipe_name(name)
    assert not out.exists(), f"{name}: {out} exists; a broken recipe must not create out/"


@pytest.mark.parametrize("name", [c for c in CASES if c.startswith("multi_")])
def test_every_mistake_is_reported_at_once(
    name: str, corpus_results: dict[str, CaseResult]
) -> None:
    """A file with N independent mistakes gives exactly N errors in one run."""
    expected = _expectations(name)
    assert len(expected) >= 3
    for outcome in corpus_results[name].outcomes:
        diags = _diagnostics(outcome.stderr, _display(name))
        reported = sorted(d[0] for d in diags)
        assert reported == sorted(e.line for e in expected), (
            f"`motionflow {outcome.command}` reported errors at lines {reported}, "
            f"want one at each of {sorted(e.line for e in expected)}:\n{outcome.stderr}"
        )


@pytest.mark.parametrize(
    ("var", "wanted"),
    [
        ("nosuchvar=1", ["--var nosuchvar", "'nosuchvar'", "style"]),
        ("styel=night", ["--var styel", "did you mean 'style'"]),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_unknown_var_override_is_refused(
    command: str, var: str, wanted: list[str], tmp_path: Path
) -> None:
    """``--var`` naming no var of a valid recipe: exit 2, with a "did you mean" when close."""
    outcome = _run_cli([command, QUICKSTART.as_posix(), "--var", var], tmp_path)
    shown = f"stderr:\n{outcome.stderr}\nstdout:\n{outcome.stdout}"
    assert "Traceback" not in outcome.stderr + outcome.stdout, shown
    assert outcome.returncode == 2, f"exit code {outcome.returncode}, want 2\n{shown}"
    errors = [line for line in outcome.stderr.splitlines() if "error:" in line]
    assert any(all(w in line for w in wanted) for line in errors), (
        f"no error line says all of {wanted}\n{shown}"
    )
    assert _untouched(tmp_path / "cache"), sorted(p.name for p in (tmp_path / "cache").rglob("*"))
    assert _untouched(tmp_path / "xdg-cache")
