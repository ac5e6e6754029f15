"""The command-line docs match the program: the generated reference, help texts, links."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

import click
import pytest
from conftest import REPO

from motionflow.cli import main


def _generator() -> ModuleType:
    path = REPO / "scripts" / "gen_cli_reference.py"
    spec = importlib.util.spec_from_file_location("gen_cli_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands() -> list[tuple[click.Command, click.Context]]:
    gen = _generator()
    root = click.Context(main, info_name="motionflow", **main.context_settings)
    return list(gen.walk(main, root))


def test_cli_reference_is_up_to_date() -> None:
    committed = (REPO / "docs" / "cli-reference.md").read_text(encoding="utf-8")
    assert committed == _generator().render_reference(), "run: python scripts/gen_cli_reference.py"


def test_every_command_and_option_is_in_the_reference() -> None:
    text = _generator().render_reference()
    commands = _commands()
    # the lazily registered groups are there, with their subcommands
    paths = {ctx.command_path for _, ctx in commands}
    assert {"motionflow cache forget", "motionflow jobs adopt", "motionflow why"} <= paths
    assert "motionflow completion" in paths
    for command, ctx in commands:
        section = text.split(f"## `{ctx.command_path}`\n", 1)[1].split("\n## ", 1)[0]
        for param in command.get_params(ctx):
            if isinstance(param, click.Option) and not param.hidden:
                if set(param.opts) & set(ctx.help_option_names):
                    continue
                assert f"`{param.opts[0]}`" in section, (ctx.command_path, param.opts)


def test_every_option_has_help_text() -> None:
    missing = [
        (ctx.command_path, param.opts)
        for command, ctx in _commands()
        for param in command.get_params(ctx)
        if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
    ]
    assert not missing, f"options without help=...: {missing}"


def test_every_command_has_help_text() -> None:
    missing = [ctx.command_path for command, ctx in _commands() if not (command.help or "").strip()]
    assert not missing


def test_the_guide_names_every_command() -> None:
    guide = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    ctx = click.Context(main, info_name="motionflow")
    for name in main.list_commands(ctx):
        assert f"## motionflow {name}" in guide, name
        assert f"[`{name}`](#motionflow-{name})" in guide, name
    assert "(cli-reference.md)" in guide


def test_the_readme_table_names_every_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    ctx = click.Context(main, info_name="motionflow")
    for name in main.list_commands(ctx):
        assert f"`motionflow {name}" in table, name
    for sub in ("forget", "collect", "adopt"):
        assert f" {sub} " in table or f" {sub}`" in table, sub


@pytest.mark.parametrize(
    "doc", ["README.md", "docs/cli.md", "docs/cli-reference.md", "docs/api.md"]
)
def test_relative_links_point_at_files_that_exist(doc: str) -> None:
    text = (REPO / doc).read_text(encoding="utf-8")
    folder = (REPO / doc).parent
    for target in re.findall(r"\]\(([^)#:\s]+\.md)(?:#[^)]*)?\)", text):
        assert (folder / target).is_file(), (doc, target)


def test_no_doc_or_comment_names_a_file_outside_the_repo() -> None:
    unshipped = "API_" + "CONTRACT"  # not spelled out, so this file does not match itself
    hits = [
        str(path.relative_to(REPO))
        for folder in ("docs", "motionflow", "tests", "scripts")
        for path in (REPO / folder).rglob("*")
        if path.suffix in {".md", ".py", ".yaml"} and unshipped in path.read_text("utf-8")
    ]
    hits += ["README.md"] if unshipped in (REPO / "README.md").read_text("utf-8") else []
    assert not hits, f"name docs/api.md instead in {hits}"
