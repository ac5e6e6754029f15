"""``motionflow init``, ``schema`` and ``completion``: set up a project and its editor and shell."""

from __future__ import annotations

import json
from pathlib import Path

import click

from motionflow.cli.errors import die, handle_errors
from motionflow.errors import UsageError

__all__ = ["completion", "init", "schema"]


@click.command()
@click.argument(
    "folder", type=click.Path(file_okay=False, path_type=Path), default=Path(), required=False
)
def init(folder: Path) -> None:
    """Create a project: a commented recipe, sample media, .gitignore and a README.

    FOLDER defaults to the current folder. It may be new or hold other files, but none of those
    init writes (recipe.yaml, README.md, .gitignore, motionflow.toml, assets/hero.png,
    assets/dance.mp4): init never overwrites anything.
    """
    import asyncio
    import shlex

    from motionflow.scaffold import init_project

    with handle_errors():
        written = asyncio.run(init_project(folder))
    for path in written:
        click.echo(f"created {path}")
    go = "" if folder == Path() else f"cd {shlex.quote(str(folder))} && "
    click.echo(f"\nNext: {go}motionflow run recipe.yaml   (offline and free: simulate)")


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    \b
    bash: add  eval "$(motionflow completion bash)"  to ~/.bashrc (bash 4.4 or newer)
    zsh:  add  eval "$(motionflow completion zsh)"  to ~/.zshrc
    fish: motionflow completion fish > ~/.config/fish/completions/motionflow.fish
    """
    from click.shell_completion import get_completion_class

    # the script calls `_MOTIONFLOW_COMPLETE=<shell>_complete motionflow`, which click's
    # main() answers: commands (lazily registered ones too), options, choices and paths
    completer = get_completion_class(shell)
    assert completer is not None  # the three shells click ships
    main = click.get_current_context().find_root().command  # the whole `motionflow` group
    script = completer(main, {}, "motionflow", "_MOTIONFLOW_COMPLETE").source()
    click.echo(script.rstrip("\n"))


@click.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to a file (- for stdout)."
)
def schema(output: str | None) -> None:
    """Print the JSON Schema of recipes, for editor autocompletion."""
    from motionflow.outfile import atomic_write_text, output_kind
    from motionflow.recipe.jsonschema import recipe_json_schema

    text = json.dumps(recipe_json_schema(), indent=2) + "\n"
    if output and output != "-":
        with handle_errors():
            if output_kind(Path(output), "the schema") == "discard":
                return
        try:
            atomic_write_text(Path(output), text)
        except OSError as exc:
            msg = f"cannot write the schema to {output!r}: {exc}; choose a writable path"
            die(UsageError(msg))
    else:
        click.echo(text, nl=False)
