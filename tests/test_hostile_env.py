"""Untrusted input from the recipe's surroundings: paths, numbers and python code.

Requirement (docs/security.md): every user mistake ends in exit code 2 with a message naming
the file and line (or the item), the cause and the fix; no traceback, nothing written to the
cache or ``out/``, no money spent, and never the exit-70 "internal error" handler. A python
stage's *function* failing at run time is a stage failure (exit 1, like any exception it
raises), never the budget's exit 3 and never silent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Project

from motionflow.errors import RecipeError
from motionflow.recipe.loader import load_recipe, parse_var

COMMANDS = ["validate", "plan", "run"]


def _refused(project: Project, command: str, recipe: str, *needles: str) -> str:
    proc = project.cli(command, recipe)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output and "internal error" not in output, output
    for needle in needles:
        assert needle in output, output
    written = [p for p in project.cache.rglob("*") if p.is_file()] if project.cache.exists() else []
    assert not written, written
    assert not (project.root / "out").exists(), output
    return output


def _image_recipe(path: str) -> str:
    return (
        "version: 1\ninputs:\n"
        f"  hero: {path}\n"
        "stages:\n"
        "  still:\n"
        "    uses: image.prepare\n"
        '    with: {src: "${inputs.hero}", fit: pad}\n'
    )


# ---------------------------------------------------------------------------------------------
# 1. paths
# ---------------------------------------------------------------------------------------------

LONG_PATH = "a" * 5000 + ".png"
LONG_NAME = "a" * 300 + ".png"

PATH_CASES = {
    "symlink-loop": ("loop_a", "a loop of symbolic links"),
    "through-a-loop": ("loop_a/hero.png", "a loop of symbolic links"),
    "5000-characters": (LONG_PATH, "5,004 characters long, more than 4,096"),
    "300-byte-name": (LONG_NAME, "longer than 255 bytes"),
    "many-folders": ("assets/" + "a/" * 2100 + "x.png", "characters long, more than 4,096"),
    "nul-byte": ('"assets/he\\0ro.png"', "cannot contain a NUL character"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", sorted(PATH_CASES))
def test_a_hostile_input_path_is_a_located_error(project: Project, case: str, command: str) -> None:
    (project.root / "loop_a").symlink_to("loop_b")
    (project.root / "loop_b").symlink_to("loop_a")
    path, cause = PATH_CASES[case]
    project.write("r.yaml", _image_recipe(path))
    output = _refused(project, command, "r.yaml", "r.yaml:3:9:", "input", "hero", cause)
    assert "unknown input" not in output  # the bad input is reported once, where it is written


def test_a_bad_input_path_does_not_hide_other_problems(project: Project) -> None:
    text = _image_recipe('"he\\0ro.png"') + "  other: {uses: nope}\n"
    project.write("r.yaml", text)
    _refused(project, "validate", "r.yaml", "NUL character", "r.yaml:8:", "'nope'", "2 errors")


def test_a_hostile_static_publish_folder_is_refused(project: Project) -> None:
    text = 'publish: {kind: static, dir: "a\\0b", base_url: "http://x"}\n'
    project.write("r.yaml", _image_recipe("assets/hero.png") + text)
    _refused(project, "validate", "r.yaml", "r.yaml:8:", "publish.static.dir", "NUL character")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_symlink_loop_as_the_recipe_is_refused(project: Project, command: str) -> None:
    (project.root / "r.yaml").symlink_to("r.yaml")
    _refused(project, command, "r.yaml", "r.yaml", "symbolic links")


def test_a_5000_character_recipe_path_is_refused(project: Project) -> None:
    _refused(project, "validate", "x" * 5000 + ".yaml", "File name too long")


def test_a_nul_in_the_recipe_path_is_a_recipe_error(tmp_path: Path) -> None:
    # argv cannot carry a NUL; the library entry point can
    with pytest.raises(RecipeError, match="cannot read the recipe"):
        load_recipe(tmp_path / "r\x00.yaml")


def test_a_python_module_that_is_a_symlink_loop_is_not_importable(project: Project) -> None:
    (project.root / "loopmod.py").symlink_to("loopmod.py")
    project.write(
        "r.yaml", 'version: 1\nstages:\n  py: {uses: python, with: {call: "loopmod:f"}}\n'
    )
    _refused(project, "validate", "r.yaml", "r.yaml:3:", "cannot import 'loopmod'")


# ---------------------------------------------------------------------------------------------
# 2. numbers: NaN, infinities and integers past 4,300 digits
# ---------------------------------------------------------------------------------------------

HELPERS = """\
import sys


def echo(x=0, y=0):
    return 1


def exits(x=0):
    sys.exit(3)


async def exits_async(x=0):
    raise SystemExit("bye")


def generator_exit(x=0):
    raise GeneratorExit


def fails(x=0):
    raise ValueError("nope")
"""

NUMBER_STAGES = {
    "prepare-start": 'uses: video.prepare, with: {src: "${inputs.dance}", start: @, duration: 3}',
    "thumbnail-at": 'uses: video.thumbnail, with: {src: "${inputs.dance}", at: @}',
    "gif-start": 'uses: video.gif, with: {src: "${inputs.dance}", start: @}',
    "python-param": 'uses: python, with: {call: "helpers:echo", x: @}',
    "python-nested": 'uses: python, with: {call: "helpers:echo", x: [1, {y: @}]}',
}

NUMBERS = {
    ".inf": "finite",
    "-.inf": "-inf",
    ".nan": "",
    "1.0e+400": "inf",
    "9" * 5000: "more than 4,300 digits",
    "0x" + "f" * 4000: "more than 4,300 digits",
}


def _number_recipe(stage: str, number: str) -> str:
    return (
        "version: 1\ninputs:\n  dance: assets/dance.mp4\nstages:\n"
        f"  s: {{{NUMBER_STAGES[stage].replace('@', number)}}}\n"
    )


@pytest.mark.parametrize("number", sorted(NUMBERS), ids=lambda n: n[:8])
@pytest.mark.parametrize("stage", sorted(NUMBER_STAGES))
def test_a_non_finite_or_huge_number_is_a_located_error(
    project: Project, stage: str, number: str
) -> None:
    project.write("helpers.py", HELPERS)
    project.write("r.yaml", _number_recipe(stage, number))
    _refused(project, "plan", "r.yaml", "r.yaml:5:", NUMBERS[number])


@pytest.mark.parametrize("stage", ["thumbnail-at", "python-nested"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_non_finite_number_is_refused_by_every_command(
    project: Project, stage: str, command: str
) -> None:
    project.write("helpers.py", HELPERS)
    project.write("r.yaml", _number_recipe(stage, ".nan"))
    where = "x.1.y" if stage == "python-nested" else "at"
    _refused(project, command, "r.yaml", "r.yaml:5:", f"stage 's': {where}: nan", "finite")


def test_a_templated_infinity_is_refused(project: Project) -> None:
    text = _number_recipe("thumbnail-at", '"{{ t }}"').replace(
        "version: 1\n", "version: 1\nvars: {t: 1}\n"
    )
    project.write("r.yaml", text)
    proc = project.cli("validate", "r.yaml", "--var", "t=-1e999")
    assert proc.returncode == 2, proc.stderr
    assert "r.yaml:6:" in proc.stderr and "at: -inf is not a finite number" in proc.stderr
    assert not (project.root / "out").exists()


def test_a_huge_var_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="--var t: an integer of more than 4,300 digits"):
        parse_var("t=0x" + "f" * 4000)


# ---------------------------------------------------------------------------------------------
# 3. python stages that exit
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("body", ["import sys\nsys.exit(5)\n", 'raise SystemExit("bye")\n'])
def test_a_module_that_exits_on_import_is_a_located_error(
    project: Project, command: str, body: str
) -> None:
    project.write("quits.py", body)
    project.write("r.yaml", 'version: 1\nstages:\n  py: {uses: python, with: {call: "quits:f"}}\n')
    _refused(
        project,
        command,
        "r.yaml",
        "r.yaml:3:",
        "stage 'py'",
        "importing 'quits' for call 'quits:f' raised SystemExit",
        '`if __name__ == "__main__":`',
    )


@pytest.mark.parametrize(
    ("func", "raised"),
    [
        ("exits", "raised SystemExit: 3; a stage function must return its result"),
        ("exits_async", "raised SystemExit: bye; a stage function must return its result"),
        ("generator_exit", "raised GeneratorExit"),
        ("fails", "raised ValueError: nope"),  # the stage failure every other error is
    ],
)
def test_a_function_that_exits_is_a_stage_failure(project: Project, func: str, raised: str) -> None:
    project.write("helpers.py", HELPERS)
    project.write(
        "r.yaml",
        f'version: 1\nstages:\n  py: {{uses: python, with: {{call: "helpers:{func}"}}}}\noutputs: [py]\n',
    )
    proc = project.cli("run", "r.yaml")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output  # a failed stage, as for any exception; never 3
    assert "Traceback" not in output and "internal error" not in output, output
    assert f"py[default]: helpers:{func} {raised}" in output, output
    assert not list((project.root / "out").rglob("py*")), output
