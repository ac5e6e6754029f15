"""Write docs/cli-reference.md from the click commands (every command, subcommand and option)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/, run from anywhere
import click
from _generated import write_or_check

from motionflow.cli import main as cli_main

TARGET = Path(__file__).resolve().parents[1] / "docs" / "cli-reference.md"

_HEADER = """\
# Command reference

Generated from the click commands by `python scripts/gen_cli_reference.py`;
`tests/test_cli_docs.py` fails when it is out of date or when an option has no help text.
The same text is in `motionflow COMMAND --help` (every command takes `-h`/`--help`). Exit
codes, JSON output, environment variables and worked examples are in [cli.md](cli.md).
"""


def walk(
    command: click.Command, ctx: click.Context
) -> Iterator[tuple[click.Command, click.Context]]:
    """``command`` and every visible subcommand under it, depth first, in ``--help`` order.

    Commands registered lazily (``COMMANDS`` in ``motionflow/cli/app.py``) are loaded too: the
    group's ``get_command`` imports them by name.
    """
    yield command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from walk(sub, _context(sub, name, ctx))


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    """The context click would make for ``command`` (its ``context_settings`` applied)."""
    return click.Context(command, info_name=name, parent=parent, **command.context_settings)


def _cell(text: str) -> str:
    """``text`` on one line, safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _default(param: click.Parameter) -> str:
    if isinstance(param, click.Option) and (param.is_flag or param.count):
        return ""  # off unless given
    default = param.to_info_dict().get("default")  # click >= 8.3 stores "unset" as a sentinel
    if default is None or callable(default) or default in ((), [], ""):
        return ""
    if isinstance(default, list | tuple):
        return ", ".join(f"`{d}`" for d in default)
    return f"`{default}`"


def _option_row(param: click.Option, ctx: click.Context) -> str:
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    metavar = "" if param.is_flag or param.count else param.make_metavar(ctx)
    if metavar:
        names += f" `{metavar}`"
    names = names.replace("|", "\\|")
    help_text = _cell(param.help or "")
    extras = []
    if isinstance(param.type, click.Choice) and not metavar.startswith("["):
        extras.append("one of " + ", ".join(f"`{c}`" for c in param.type.choices))
    if param.multiple and "repeatable" not in help_text:
        extras.append("repeatable")
    envvar = param.envvar
    envs = [envvar] if isinstance(envvar, str) else list(envvar or ())
    if envs and not all(e in help_text for e in envs):
        extras.append("env " + ", ".join(f"`{e}`" for e in envs))
    if extras:
        help_text = f"{help_text} ({'; '.join(extras)})" if help_text else "; ".join(extras)
    return f"| {names} | {help_text} | {_default(param)} |"


def _section(command: click.Command, ctx: click.Context) -> str:
    path = ctx.command_path
    lines = [f"## `{path}`", ""]
    parts = command.collect_usage_pieces(ctx)
    if isinstance(command, click.Group):  # spelled by us: click versions differ here
        parts = [p for p in parts if "COMMAND" not in p and p != "[ARGS]..."]
        sub = "[COMMAND]" if command.invoke_without_command else "COMMAND"
        parts.append(f"{sub} [ARGS]...")
    pieces = " ".join(parts)
    lines += ["```", f"{path} {pieces}".rstrip(), "```", ""]
    help_text = inspect.cleandoc(command.help or command.short_help or "")
    help_text = help_text.replace("\b\n", "").replace("\b", "")
    if help_text:
        lines += [help_text, ""]
    arguments = [p for p in command.get_params(ctx) if isinstance(p, click.Argument)]
    if arguments:
        lines += ["| argument | |", "|---|---|"]
        for arg in arguments:
            what = arg.make_metavar(ctx)
            notes = []
            if isinstance(arg.type, click.Choice):
                notes.append("one of " + ", ".join(f"`{c}`" for c in arg.type.choices))
            if not arg.required:
                notes.append("optional")
            lines.append(f"| `{what}` | {'; '.join(notes)} |")
        lines.append("")
    helps = set(ctx.help_option_names)
    options = [
        p
        for p in command.get_params(ctx)
        if isinstance(p, click.Option) and not p.hidden and not helps & set(p.opts)
    ]
    if options:
        lines += ["| option | meaning | default |", "|---|---|---|"]
        lines += [_option_row(opt, ctx) for opt in options]
        lines.append("")
    if isinstance(command, click.Group):
        subs = [
            (name, sub)
            for name in command.list_commands(ctx)
            if (sub := command.get_command(ctx, name)) is not None and not sub.hidden
        ]
        lines += ["| command | what it does |", "|---|---|"]
        for name, sub in subs:
            anchor = f"{path} {name}".replace(" ", "-")
            summary = _cell(sub.get_short_help_str(limit=200))
            lines.append(f"| [`{name}`](#{anchor}) | {summary} |")
        lines.append("")
    return "\n".join(lines)


def render_reference() -> str:
    """The whole of docs/cli-reference.md."""
    root = _context(cli_main, "motionflow", None)
    sections = [_section(command, ctx) for command, ctx in walk(cli_main, root)]
    return _HEADER + "\n" + "\n".join(sections).rstrip("\n") + "\n"


def main() -> int:
    """Regenerate the file (or, with --check, exit 1 when it is out of date)."""
    return write_or_check(TARGET, render_reference(), "gen_cli_reference.py")


if __name__ == "__main__":
    raise SystemExit(main())
