"""The recipe language: matrix expansion, variant ids, references, templating, --var."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from motionflow.errors import RecipeError
from motionflow.graph import Interp, Slot, build_graph
from motionflow.recipe.loader import load_recipe, parse_var
from motionflow.recipe.refs import Ref, RefSyntaxError, find_refs


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "motionflow.toml").write_text("")
    path = tmp_path / "r.yaml"
    path.write_text(body)
    return path


MATRIX = """\
version: 1
matrix:
  outfit: [red jacket, white hoodie]
  mode: [std, pro]
  exclude: [{outfit: white hoodie, mode: pro}]
  include:
    - {outfit: red jacket, mode: pro, light: dusk}
    - {outfit: gold cape, mode: std}
stages:
  p: {uses: prompt, with: {template: "{{ outfit }} {{ mode }}"}}
"""


def test_matrix_exclude_and_include_follow_github_rules(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MATRIX))
    cells = [dict(v.values) for v in recipe.variants]
    assert cells == [
        {"outfit": "red jacket", "mode": "std"},
        {"outfit": "red jacket", "mode": "pro", "light": "dusk"},
        {"outfit": "white hoodie", "mode": "std"},
        {"outfit": "gold cape", "mode": "std"},
    ]
    assert [v.id for v in recipe.variants] == [
        "red-jacket_std",
        "red-jacket_pro_dusk",
        "white-hoodie_std",
        "gold-cape_std",
    ]


def test_variant_ids_are_stable_and_long_ones_get_a_hash(tmp_path: Path) -> None:
    long = "a very long outfit description " * 4
    body = f'version: 1\nmatrix: {{outfit: ["{long}", "A/B"]}}\nstages: {{p: {{uses: prompt, with: {{template: x}}}}}}\n'
    first = [v.id for v in load_recipe(write(tmp_path, body)).variants]
    again = [v.id for v in load_recipe(write(tmp_path, body)).variants]
    assert first == again
    assert len(first[0]) <= 60 and first[0].startswith("a-very-long-outfit")
    assert first[1] == "a-b"


def test_no_matrix_means_one_default_variant(tmp_path: Path) -> None:
    body = "version: 1\nstages: {p: {uses: prompt, with: {template: hello}}}\n"
    recipe = load_recipe(write(tmp_path, body))
    assert [v.id for v in recipe.variants] == ["default"]


def test_references_are_parsed_statically() -> None:
    found = find_refs("a ${inputs.hero} b ${stages.p.text} $${literal} ${nonsense}")
    kinds = [item for item, _, _ in found]
    assert kinds[0] == Ref("inputs", "hero")
    assert kinds[1] == Ref("stages", "p", "text")
    assert isinstance(kinds[2], RefSyntaxError) and kinds[2].text == "${nonsense}"
    assert len(found) == 3  # "$${" is an escape, not a reference


def test_reference_inside_a_string_and_escape(tmp_path: Path) -> None:
    body = """\
version: 1
stages:
  p: {uses: prompt, with: {template: hello}}
  q: {uses: prompt, with: {template: "${stages.p.text}, costs $${price}"}}
"""
    graph = build_graph(load_recipe(write(tmp_path, body)))
    q = next(i for i in graph.instances if i.stage == "q")
    value = q.params["template"]
    assert isinstance(value, Interp)
    assert isinstance(value.parts[0], Slot) and value.parts[1] == ", costs ${price}"


def test_identical_instances_are_merged(tmp_path: Path) -> None:
    body = """\
version: 1
matrix: {outfit: [a, b, c]}
stages:
  shared: {uses: prompt, with: {template: "same for all"}}
  own: {uses: prompt, with: {template: "{{ outfit }} ${stages.shared.text}"}}
"""
    graph = build_graph(load_recipe(write(tmp_path, body)))
    shared = [i for i in graph.instances if i.stage == "shared"]
    assert len(shared) == 1 and len(shared[0].variants) == 3
    assert len([i for i in graph.instances if i.stage == "own"]) == 3


def test_var_override_must_name_a_var(tmp_path: Path) -> None:
    body = "version: 1\nvars: {style: x}\nstages: {p: {uses: prompt, with: {template: '{{ style }}'}}}\n"
    path = write(tmp_path, body)
    assert load_recipe(path, overrides={"style": "beach"}).vars == {"style": "beach"}
    with pytest.raises(RecipeError, match="did you mean 'style'"):
        load_recipe(path, overrides={"styl": "beach"})


def test_parse_var_reads_yaml_scalars() -> None:
    assert parse_var("n=8") == ("n", 8)
    assert parse_var("flag=true") == ("flag", True)
    assert parse_var("style=neon rooftop") == ("style", "neon rooftop")
    assert parse_var("empty=") == ("empty", "")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_var("novalue")


def test_file_reference_inside_a_longer_string_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    body = """\
version: 1
inputs: {a: a.png}
stages:
  p: {uses: prompt, with: {template: "look at ${inputs.a} please"}}
"""
    from motionflow.cache.store import Cache
    from motionflow.plan import make_plan

    with pytest.raises(RecipeError, match="is a file and cannot be part of a longer string"):
        make_plan(load_recipe(write(tmp_path, body)), Cache(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("body", "line", "column"),
    [
        ("version: 1\nstages:\n\tp:\n\t  uses: prompt\n", 3, 1),
        ("version: 1\nstages:\n  p:\n    uses: prompt\n    with:\n    \ttemplate: hi\n", 6, 5),
        ("version: 1\nstages:\n  p:\n    uses: prompt\n\t\n    with: {template: hi}\n", 5, 1),
    ],
)
def test_a_tab_in_the_indentation_is_named(
    tmp_path: Path, body: str, line: int, column: int
) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, body))
    (diag,) = info.value.diagnostics
    assert f"line {line} uses a tab for indentation; YAML needs spaces" in diag.message
    assert (diag.line, diag.column) == (line, column)
    assert diag.render().startswith(f"{diag.file}:{line}:{column}: error: ")


def test_a_tab_inside_a_value_is_fine(tmp_path: Path) -> None:
    body = 'version: 1\nstages:\n  p: {uses: prompt, with: {template: "a\tb"}}\noutputs: [p]\n'
    assert load_recipe(write(tmp_path, body)).model.stages["p"].uses == "prompt"


def _invoke(tmp_path: Path, *args: str) -> tuple[int, Any]:
    from click.testing import CliRunner

    from motionflow.cli import main

    runner = CliRunner()
    result = runner.invoke(main, list(args), env={"MOTIONFLOW_CACHE": str(tmp_path / "cache")})
    return result.exit_code, json.loads(result.stdout)


def test_validate_json(tmp_path: Path) -> None:
    good = write(tmp_path, MATRIX)
    code, out = _invoke(tmp_path, "validate", str(good), "--json")
    assert code == 0 and out["ok"] is True and out["problems"] == []
    assert out["variants"] == 4 and out["stages"] == 1

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nstages:\n  p: {uses: prompt, with: {template: hi}}\n  q: [\n")
    code, out = _invoke(tmp_path, "validate", str(bad), "--json")
    assert code == 2 and out["ok"] is False
    (problem,) = out["problems"]
    assert problem["file"] == str(bad) and problem["line"] >= 1 and problem["column"] >= 1
    assert "YAML" in problem["message"]

    code, out = _invoke(tmp_path, "validate", str(tmp_path / "nope.yaml"), "--json")
    assert code == 2 and out["ok"] is False
    assert out["problems"][0]["line"] is None and "nope.yaml" in out["problems"][0]["message"]


def test_dag_json(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\ninputs: {hero: hero.png}\nstages:\n"
        "  p: {uses: prompt, with: {template: hi}}\n"
        '  q: {uses: prompt, with: {template: "${stages.p.text} ${inputs.hero}"}}\n'
        "outputs: [q]\n",
    )
    (tmp_path / "hero.png").write_bytes(b"not really a png")
    code, out = _invoke(tmp_path, "dag", str(path), "--json")
    assert code == 0
    assert out["nodes"][0] == {"id": "inputs.hero", "kind": "input"}
    stages = {n["id"]: n for n in out["nodes"] if n["kind"] == "stage"}
    assert stages["q"] == {
        "id": "q",
        "kind": "stage",
        "uses": "prompt",
        "instances": 1,
        "output": True,
    }
    assert {"from": "p", "to": "q"} in out["edges"]
    assert {"from": "inputs.hero", "to": "q"} in out["edges"]
