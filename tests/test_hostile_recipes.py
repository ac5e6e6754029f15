"""Hostile recipes beyond the corpus: cases that need more than one command, and the loader's
own limits checked directly.

The single-command cases (alias and merge bombs, a 10-axis matrix, huge, deep, ``/dev/zero``,
FIFO and folder recipes, hostile plan files) are cases of ``tests/hostile/corpus.py``, run by
``tests/test_hostile_corpus.py``. Every command here runs the real CLI as a subprocess whose
60 s timeout is the guard against a hang.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import SMALL_RECIPE, Project
from hostile.corpus import MATRIX_2X2

from motionflow.errors import RecipeError
from motionflow.recipe.yamlpos import MAX_YAML_NODES, load_yaml

CLI = [sys.executable, "-c", "from motionflow.cli import main; main()"]


def _cli(project: Project, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``motionflow ARGS`` in the project; return the exit code and stdout + stderr."""
    full_env = {**os.environ, "MOTIONFLOW_CACHE": str(project.cache), **(env or {})}
    proc = subprocess.run(
        [*CLI, *args],
        cwd=project.root,
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,  # the guard: a hang fails the test instead of the suite
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.slow
def test_a_recipe_swapped_for_a_fifo_after_a_clean_run_is_refused(project: Project) -> None:
    # the run stamp (the no-op shortcut) must not read it either
    project.write("small.yaml", SMALL_RECIPE)
    assert project.run_json("small.yaml")["_exit"] == 0
    (project.root / "small.yaml").unlink()
    os.mkfifo(project.root / "small.yaml")
    proc = project.cli("run", "small.yaml")
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


def test_the_variant_cap_is_configurable(project: Project) -> None:
    """Over the cap is a corpus case (``variants-over-the-cap``); raised, the same matrix runs."""
    project.write("small.yaml", MATRIX_2X2)
    code, output = _cli(project, "validate", "small.yaml", env={"MOTIONFLOW_MAX_VARIANTS": "4"})
    assert code == 0, output


def test_aliases_within_the_limit_stay_usable() -> None:
    text = "base: &b {mode: std, n: [1, 2]}\nuse: {<<: *b, take: 3}\nboth: [*b, *b]\n"
    data, _ = load_yaml(text, "ok.yaml")
    assert data["both"] == [{"mode": "std", "n": [1, 2]}] * 2
    assert data["use"] == {"mode": "std", "n": [1, 2], "take": 3}


def test_the_node_limit_counts_alias_expansions() -> None:
    items = ", ".join(["*a"] * (MAX_YAML_NODES // 10 + 1))
    text = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nb: [" + items + "]\n"
    with pytest.raises(RecipeError) as caught:
        load_yaml(text, "wide.yaml")
    (problem,) = caught.value.diagnostics
    assert (problem.file, problem.line) == ("wide.yaml", 2)


def test_values_written_out_are_not_counted_as_copies() -> None:
    """A 100,000-value matrix axis is a real sweep, bounded by the file's size, not a bomb."""
    values = ", ".join(f"v{i}" for i in range(MAX_YAML_NODES + 1))
    data, _ = load_yaml(f"matrix:\n  take: [{values}]\n", "big.yaml")
    assert len(data["matrix"]["take"]) == MAX_YAML_NODES + 1


@pytest.mark.parametrize("link", ["[*a{prev}]", "{{<<: *a{prev}, k{i}: 1}}"])
@pytest.mark.slow
def test_a_long_chain_of_aliases_is_refused(link: str) -> None:
    lines = ["a0: &a0 {k: 1}"]
    lines += [f"a{i}: &a{i} " + link.format(prev=i - 1, i=i) for i in range(1, 5000)]
    with pytest.raises(RecipeError) as caught:
        load_yaml("\n".join(lines) + "\n", "chain.yaml")
    assert "chain.yaml" in str(caught.value)
