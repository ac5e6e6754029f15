"""The CLI is a package, not a circle: its modules share public names only, and stay small.

Imports are read by ``scripts/layers.py`` (every ``import`` counts, those inside functions and
under ``TYPE_CHECKING`` too); tests/test_layers.py checks that only the CLI imports click or
rich.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from layers import PACKAGE, Edge, imports_of_package

CLI = PACKAGE / "cli"


def _private_cli_imports(edges: list[Edge]) -> list[str]:
    """Imports by a cli module of an underscored name of another cli module."""
    found = []
    for edge in edges:
        if not edge.source.startswith("motionflow.cli.") or not (
            edge.target == "motionflow.cli" or edge.target.startswith("motionflow.cli.")
        ):
            continue
        private = [n for n in edge.names if n.startswith("_")]
        private += [p for p in edge.target.split(".") if p.startswith("_")]
        if private:
            found.append(f"{edge.where}: from {edge.target} imports {', '.join(private)}")
    return found


def test_the_cli_is_a_package() -> None:
    assert (CLI / "__init__.py").is_file()
    assert not list(PACKAGE.glob("cli_*.py")), "old cli_*.py modules are back"
    assert not (PACKAGE / "cli.py").exists()


def test_cli_modules_import_no_private_names_from_each_other() -> None:
    bad = _private_cli_imports(imports_of_package())
    assert not bad, "private helpers shared between cli modules:\n" + "\n".join(bad)


def test_the_walker_sees_lazy_relative_and_private_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "motionflow" / "cli"
    pkg.mkdir(parents=True)
    (tmp_path / "motionflow" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "mod.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import rich.console\n"
        "def f():\n    from .errors import _die\n    import click\n"
    )
    edges = imports_of_package(tmp_path / "motionflow", external=True)
    found = {(e.target, e.names) for e in edges if e.source == "motionflow.cli.mod"}
    assert ("rich.console", ()) in found
    assert ("click", ()) in found
    assert ("motionflow.cli.errors", ("_die",)) in found
    assert _private_cli_imports(edges) == [
        "motionflow/cli/mod.py:5: from motionflow.cli.errors imports _die"
    ]


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 500, f"{path.name} has {lines} lines: split it by noun (STYLE.md, rule 9)"
