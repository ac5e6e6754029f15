"""The CLI is a package, not a circle: only it imports click or rich, and its modules share
public names only.

Every ``import`` counts, those inside functions and under ``TYPE_CHECKING`` too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "motionflow"
CLI = PACKAGE / "cli"


def _module(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = PACKAGE) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, module, names)`` for every import in ``path``; relative ones made absolute."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base, [alias.name for alias in node.names]


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_cli_is_a_package() -> None:
    assert (CLI / "__init__.py").is_file()
    assert not list(PACKAGE.glob("cli_*.py")), "old cli_*.py modules are back"
    assert not (PACKAGE / "cli.py").exists()


def test_only_the_cli_imports_click_or_rich() -> None:
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: imports {name}"
        for path in _sources(PACKAGE)
        if CLI not in path.parents
        for line, name, _ in _imports(path)
        if name.split(".")[0] in {"click", "rich"}
    ]
    assert not bad, "click or rich outside motionflow/cli/:\n" + "\n".join(bad)


def test_cli_modules_import_no_private_names_from_each_other() -> None:
    bad = []
    for path in _sources(CLI):
        for line, module, names in _imports(path):
            if module != "motionflow.cli" and not module.startswith("motionflow.cli."):
                continue
            private = [n for n in names if n.startswith("_")]
            private += [p for p in module.split(".") if p.startswith("_")]
            if private:
                where = path.relative_to(PACKAGE.parent)
                bad.append(f"{where}:{line}: from {module} imports {', '.join(private)}")
    assert not bad, "private helpers shared between cli modules:\n" + "\n".join(bad)


def test_the_walker_sees_lazy_relative_and_private_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "motionflow" / "cli"
    pkg.mkdir(parents=True)
    mod = pkg / "mod.py"
    mod.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import rich.console\n"
        "def f():\n    from .errors import _die\n    import click\n"
    )
    found = {(name, tuple(names)) for _, name, names in _imports(mod, tmp_path / "motionflow")}
    assert ("rich.console", ()) in found
    assert ("click", ()) in found
    assert ("motionflow.cli.errors", ("_die",)) in found


@pytest.mark.parametrize("path", _sources(CLI), ids=lambda p: p.name)
def test_cli_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 500, f"{path.name} has {lines} lines: split it by noun (STYLE.md, rule 9)"
