"""The hostile corpus: recipes and plan files built to hang or exhaust motionflow.

Requirement: each ends fast with exit code 2 and a message naming the file, its cause and
the fix; no traceback; nothing is written to the cache or ``out/``. The small cases are files
under ``tests/hostile/``; the big ones (a 2 MiB recipe, a 65 MiB plan, JSON nested 200,000
deep) are generated in ``tmp_path``, sparsely where the size is the point. Every command runs
the real CLI as a subprocess whose 60 s timeout is the guard against a hang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, SMALL_RECIPE, Project

from motionflow.errors import RecipeError
from motionflow.recipe.yamlpos import MAX_YAML_NODES, load_yaml

HOSTILE = REPO / "tests" / "hostile"
CLI = [sys.executable, "-c", "from motionflow.cli import main; main()"]

#: Every file of the corpus and what its message must say.
CORPUS = {
    "alias_bomb.yaml": ("alias_bomb.yaml:9:", "more than 100,000 values", "aliases"),
    "merge_bomb.yaml": ("merge_bomb.yaml:", "more than 100,000 values", "merges (<<)"),
    "matrix_10_axes.yaml": (
        "matrix_10_axes.yaml:3:1",
        "would make 10,000,000,000 variants",
        "MOTIONFLOW_MAX_VARIANTS",
    ),
}


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


def _refused(project: Project, output: str, code: int, *needles: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output, output
    for needle in needles:
        assert needle in output, output
    assert not project.cache.exists() or not any(project.cache.iterdir())
    assert not (project.root / "out").exists()


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_recipe_is_refused(project: Project, name: str, command: str) -> None:
    shutil.copy(HOSTILE / name, project.root / name)
    code, output = _cli(project, command, name)
    _refused(project, output, code, *CORPUS[name])


def test_a_huge_recipe_is_refused(project: Project) -> None:
    with (project.root / "huge.yaml").open("wb") as handle:
        handle.truncate(2 << 20)  # sparse: 2 MiB of nothing
    code, output = _cli(project, "validate", "huge.yaml")
    _refused(project, output, code, "huge.yaml", "larger than 1,048,576 bytes")


def test_yaml_nested_500000_deep_is_refused(project: Project) -> None:
    depth = 500_000  # under the 1 MiB cap; the C parser would crash the process
    (project.root / "deep.yaml").write_text("[" * depth + "]" * depth, encoding="utf-8")
    code, output = _cli(project, "validate", "deep.yaml")
    _refused(project, output, code, "deep.yaml:1:", "nest more than 200 deep")


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_dev_zero_as_a_recipe_is_refused(project: Project, command: str) -> None:
    code, output = _cli(project, command, "/dev/zero")
    _refused(project, output, code, "/dev/zero", "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_fifo_as_a_recipe_is_refused(project: Project, command: str) -> None:
    os.mkfifo(project.root / "pipe.yaml")
    code, output = _cli(project, command, "pipe.yaml")
    _refused(project, output, code, "pipe.yaml", "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_recipe_swapped_for_a_fifo_after_a_clean_run_is_refused(project: Project) -> None:
    # the run stamp (the no-op shortcut) must not read it either
    project.write("small.yaml", SMALL_RECIPE)
    assert project.run_json("small.yaml")["_exit"] == 0
    (project.root / "small.yaml").unlink()
    os.mkfifo(project.root / "small.yaml")
    proc = project.cli("run", "small.yaml")
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr and "Traceback" not in proc.stderr


def test_a_folder_as_a_recipe_is_refused(project: Project) -> None:
    (project.root / "folder.yaml").mkdir()
    code, output = _cli(project, "validate", "folder.yaml")
    _refused(project, output, code, "folder.yaml", "is a directory")


def _plan_case(project: Project, kind: str) -> str:
    project.write("small.yaml", SMALL_RECIPE)
    if kind == "dev-zero":
        return "/dev/zero"
    path = project.root / f"plan-{kind}.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        with path.open("wb") as handle:
            handle.truncate((64 << 20) + 1)  # sparse, one byte over the cap
    elif kind == "deep":
        depth = 200_000
        path.write_text("[" * depth + "]" * depth, encoding="utf-8")
    return path.name


PLAN_CASES = {
    "dev-zero": "not a regular file",
    "fifo": "not a regular file",
    "huge": "larger than 64 MiB",
    "deep": "nests too deep",
}


@pytest.mark.parametrize("kind", sorted(PLAN_CASES))
def test_hostile_plan_file_is_refused(project: Project, kind: str) -> None:
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    plan = _plan_case(project, kind)
    code, output = _cli(project, "run", "small.yaml", "--plan", plan)
    _refused(project, output, code, f"the plan file {plan!r}", PLAN_CASES[kind], "Nothing was run")


#: No inputs: with inputs, `validate` of a recipe with problems still creates the (empty)
#: cache folders while digesting them, which this file's "nothing written" check forbids.
MATRIX_2X2 = """\
version: 1
matrix:
  outfit: [red jacket, white hoodie]
  light: [dusk, noon]
stages:
  prompt:
    uses: prompt
    with: {template: "A dancer in a {{ outfit }} at {{ light }}."}
"""


def test_the_variant_cap_is_configurable(project: Project) -> None:
    project.write("small.yaml", MATRIX_2X2)
    code, output = _cli(project, "validate", "small.yaml", env={"MOTIONFLOW_MAX_VARIANTS": "3"})
    _refused(project, output, code, "small.yaml:", "would make 4 variants", "limit of 3")
    code, output = _cli(project, "validate", "small.yaml", env={"MOTIONFLOW_MAX_VARIANTS": "4"})
    assert code == 0, output


def test_a_bad_variant_cap_is_named(project: Project) -> None:
    project.write("small.yaml", MATRIX_2X2)
    code, output = _cli(project, "plan", "small.yaml", env={"MOTIONFLOW_MAX_VARIANTS": "lots"})
    _refused(project, output, code, "MOTIONFLOW_MAX_VARIANTS='lots'", "whole number")


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


@pytest.mark.parametrize("link", ["[*a{prev}]", "{{<<: *a{prev}, k{i}: 1}}"])
def test_a_long_chain_of_aliases_is_refused(link: str) -> None:
    lines = ["a0: &a0 {k: 1}"]
    lines += [f"a{i}: &a{i} " + link.format(prev=i - 1, i=i) for i in range(1, 5000)]
    with pytest.raises(RecipeError) as caught:
        load_yaml("\n".join(lines) + "\n", "chain.yaml")
    assert "chain.yaml" in str(caught.value)
